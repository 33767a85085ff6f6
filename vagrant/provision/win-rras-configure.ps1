# win-rras, step 2: RRAS as a PPTP server (the case fixup exists for: PPTP through PAT to a
# Microsoft server).  MS-CHAP v2 only, MPPE required (RRAS default for PPTP), static pool
# 192.168.88.10-50, local user vpnuser with dial-in permission.
$ErrorActionPreference = "Stop"
$user = "vpnuser"
$password = ConvertTo-SecureString "Fixup-Vpn-2024!" -AsPlainText -Force

if (-not (Get-RemoteAccess -ErrorAction SilentlyContinue | Where-Object { $_.VpnStatus -eq "Installed" })) {
    Install-RemoteAccess -VpnType Vpn -Legacy
}
Set-VpnIPAddressAssignment -IPAssignmentMethod StaticPool -IPAddressRange "192.168.88.10", "192.168.88.50"
Set-VpnAuthProtocol -UserAuthProtocolAccepted MsChapv2
# PPTP ports for remote access (netsh keeps working on Server 2016-2022)
netsh ras set wanports device = "WAN Miniport (PPTP)" rasinonly = enabled ddinout = disabled ddoutonly = disabled maxports = 16

if (-not (Get-LocalUser -Name $user -ErrorAction SilentlyContinue)) {
    New-LocalUser -Name $user -Password $password -PasswordNeverExpires -Description "fixup interop PPTP user"
}
netsh ras set user $user permit

# TCP 1723 and GRE (protocol 47) in; the built-in RRAS rule group covers both
Enable-NetFirewallRule -DisplayGroup "Routing and Remote Access"
New-NetFirewallRule -DisplayName "fixup lab ICMP" -Protocol ICMPv4 -IcmpType 8 -Direction Inbound -Action Allow `
    -ErrorAction SilentlyContinue | Out-Null

Restart-Service RemoteAccess
Get-VpnServerConfiguration | Format-List
Write-Output "win-rras: PPTP server on 10.0.0.3 ready (user $user)"
