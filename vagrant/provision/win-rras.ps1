# win-rras, step 1: install Routing and Remote Access (RRAS) with the VPN role.  A reboot may be
# needed before step 2 (win-rras-configure.ps1): `vagrant reload win-rras --provision-with rras-configure`
# when the vagrant-reload plugin is not installed.
$ErrorActionPreference = "Stop"
Install-WindowsFeature -Name RemoteAccess, DirectAccess-VPN, Routing -IncludeManagementTools | Format-List
# the lab's outside network: 10.0.0.3/24 (Vagrant configures the address); no gateway
Write-Output "win-rras: RRAS features installed"
