"""The dial-in server's I/O shell: the TCP 1723 listener, the raw GRE socket, the TUN device, ``show vpdn``."""
