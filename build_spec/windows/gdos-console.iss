; Inno Setup script: the Windows installer of the console folder (dist\gdos-console, built on
; Windows with `pyinstaller build_spec\console.spec`): gdos-console.exe with the gdos-master.exe
; and gdos-agent.exe its embedded mode starts, a Start menu entry, an uninstaller.
;   iscc /DAppVersion=0.1.0 build_spec\windows\gdos-console.iss
; writes dist\GDOS-Console-Setup-<version>.exe. Not built or tried in CI (Linux): see
; docs/install.md.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Bundle "..\..\dist\gdos-console"

[Setup]
AppId={{6F1C1E4B-3B57-4A0B-9B6E-2C5D7E3A9F10}
AppName=GDOS Console
AppVersion={#AppVersion}
AppPublisher=GDOS
DefaultDirName={autopf}\GDOS Console
DefaultGroupName=GDOS
DisableProgramGroupPage=yes
; A per-user install needs no administrator; the embedded master listens on 127.0.0.1 only.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=GDOS-Console-Setup-{#AppVersion}
SetupIconFile=..\..\build\icons\gdos-console.ico
UninstallDisplayIcon={app}\gdos-console.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; Files in use (a console still running, its master or agent) are closed through Windows'
; Restart Manager before they are replaced or removed.
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Bundle}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\GDOS Console"; Filename: "{app}\gdos-console.exe"
Name: "{autoprograms}\GDOS Console (local master and agent)"; Filename: "{app}\gdos-console.exe"; Parameters: "--embedded"
Name: "{autodesktop}\GDOS Console"; Filename: "{app}\gdos-console.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\gdos-console.exe"; Description: "{cm:LaunchProgram,GDOS Console}"; Flags: nowait postinstall skipifsilent
