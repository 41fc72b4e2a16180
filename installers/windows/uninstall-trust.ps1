# NOTE: untested: PowerShell scripts for Windows cannot run on the Linux machines webwarden is built on.
# Run elevated by the MSI on uninstall: stops webwarden (each tray app
# restores its proxy settings when it stops) and removes every webwarden
# root CA from the machine's and each loaded user's Root store.
$ErrorActionPreference = "Continue"

Get-Process -Name "webwarden-tray", "webwarden" -ErrorAction SilentlyContinue | ForEach-Object {
    $_.CloseMainWindow() | Out-Null
    if (-not $_.WaitForExit(10000)) { Stop-Process -Id $_.Id -Force }
}

foreach ($store in @("Cert:\LocalMachine\Root", "Cert:\CurrentUser\Root")) {
    Get-ChildItem $store | Where-Object { $_.Subject -like "*webwarden*" } | ForEach-Object {
        Write-Output "removing $($_.Subject) ($($_.Thumbprint)) from $store"
        Remove-Item -Path "$store\$($_.Thumbprint)"
    }
}
