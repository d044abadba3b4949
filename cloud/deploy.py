"""Generated configuration for the reference cloud's third-party servers: Orthanc and nginx.

Owns the on-disk layout under the cloud directory (DIR/orthanc, DIR/nginx, DIR/worklist, DIR/run, DIR/logs,
DIR/outbound) and writes Orthanc's JSON configuration (+ a 0600 credentials file) and nginx's configuration,
so both Debian binaries run as plain foreground children with everything they touch under DIR.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from cloud.config import CloudConfig

ORTHANC_BIN = "/usr/sbin/Orthanc"
NGINX_BIN = "/usr/sbin/nginx"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AE_TITLE = "READROOM"


@dataclasses.dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def orthanc(self) -> Path: return self.root / "orthanc"
    @property
    def orthanc_config_dir(self) -> Path: return self.orthanc / "config"
    @property
    def storage(self) -> Path: return self.orthanc / "storage"
    @property
    def nginx(self) -> Path: return self.root / "nginx"
    @property
    def nginx_conf(self) -> Path: return self.nginx / "nginx.conf"
    @property
    def worklist(self) -> Path: return self.root / "worklist"
    @property
    def run(self) -> Path: return self.root / "run"
    @property
    def logs(self) -> Path: return self.root / "logs"
    @property
    def outbound(self) -> Path: return self.root / "outbound"

    def make(self) -> None:
        for p in (self.orthanc_config_dir, self.storage, self.nginx / "tmp", self.worklist, self.run, self.logs,
                  self.outbound):
            p.mkdir(parents=True, exist_ok=True)
        for p in (self.run, self.orthanc_config_dir):
            os.chmod(p, 0o700)


def find_binary(path: str, name: str) -> str:
    if Path(path).exists():
        return path
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (expected {path}); install the Debian package "
                                f"({'orthanc orthanc-dicomweb' if name == 'Orthanc' else 'nginx-light'})")
    return found


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def write_orthanc_config(layout: Layout, config: CloudConfig, http_port: int, dicom_port: int,
                         public_host: str, users: dict[str, str]) -> Path:
    """orthanc.json + credentials.json (0600, RegisteredUsers) in a config directory Orthanc merges."""
    plugin = DICOMWEB_PLUGIN if Path(DICOMWEB_PLUGIN).exists() else None
    if plugin is None:
        raise FileNotFoundError(f"Orthanc DICOMweb plugin not found at {DICOMWEB_PLUGIN}: "
                                "install the Debian package orthanc-dicomweb")
    conf = {
        "Name": "ReadRoom reference archive",
        "StorageDirectory": str(layout.storage),
        "IndexDirectory": str(layout.storage),
        "StorageCompression": False,
        "Plugins": [plugin],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "HttpThreadsCount": 16,
        "KeepAlive": True,
        "HttpTimeout": 120,
        "HttpCompressionEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": AE_TITLE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": config.accept_any_calling_ae,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {n: list(m) for n, m in config.dicom_modalities.items()},
        "DicomCheckModalityHost": not config.accept_any_calling_ae,
        "UnknownSopClassAccepted": True,
        "StableAge": config.stable_age_s,
        "SaveJobs": False,
        "OverwriteInstances": False,
        "ConcurrentJobs": 2,
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            "Host": public_host,
            "Ssl": config.tls_certificate is not None,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }
    (layout.orthanc_config_dir / "orthanc.json").write_text(json.dumps(conf, indent=2))
    write_private(layout.orthanc_config_dir / "credentials.json", json.dumps({"RegisteredUsers": users}, indent=2))
    return layout.orthanc_config_dir


def write_nginx_config(layout: Layout, config: CloudConfig, http_port: int, orthanc_port: int,
                       worklist_port: int, auth_port: int, orthanc_basic_header: str) -> Path:
    """nginx.conf: the front door. /dicom-web/workitems* and the event channel -> worklist service; the rest of
    /dicom-web/ -> Orthanc after the user was checked (auth_request) against the configured users."""
    tmp = layout.nginx / "tmp"
    tls = config.tls_certificate is not None
    listen = f"listen 127.0.0.1:{http_port}{' ssl' if tls else ''};"
    ssl = ""
    if tls:
        ssl = (f"ssl_certificate {config.tls_certificate};\n    ssl_certificate_key {config.tls_key};\n"
               "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:readroom_ssl:1m;")
    proxy_common = """proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;"""
    # As root, nginx would switch its workers to "nobody", who cannot reach temp paths under a private DIR.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    text = f"""# Generated by readroom-cloud; edits are overwritten at the next start.
{user}worker_processes 1;
pid {layout.nginx / 'nginx.pid'};
# crit, not warn: nginx's [error]/[warn] lines quote the whole request line, query included (an upstream that
# is down logs 'request: "GET /dicom-web/studies?PatientID=..."'); the access log below says the same without it.
error_log {layout.logs / 'nginx-error.log'} crit;
events {{ worker_connections 1024; }}
http {{
  # No query strings in the log: QIDO/UPS-RS searches carry PatientID and names there. upstream= tells a
  # failed backend (502, upstream "-" or 502) from a refusal by nginx itself.
  log_format readroom_noquery '$remote_addr $remote_user [$time_local] "$request_method $uri" '
                              '$status $body_bytes_sent $request_time upstream=$upstream_status';
  access_log {layout.logs / 'nginx-access.log'} readroom_noquery;
  client_body_temp_path {tmp / 'body'};
  proxy_temp_path {tmp / 'proxy'};
  fastcgi_temp_path {tmp / 'fastcgi'};
  uwsgi_temp_path {tmp / 'uwsgi'};
  scgi_temp_path {tmp / 'scgi'};
  client_max_body_size 0;
  server_tokens off;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream readroom_orthanc {{ server 127.0.0.1:{orthanc_port}; keepalive 16; }}
  upstream readroom_worklist {{ server 127.0.0.1:{worklist_port}; keepalive 16; }}
  upstream readroom_auth {{ server 127.0.0.1:{auth_port}; keepalive 4; }}
  server {{
    {listen}
    {ssl}
    location = /_readroom_auth {{
      internal;
      proxy_pass http://readroom_auth/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Authorization $http_authorization;
    }}
    location = /healthz {{ return 200 "ok\\n"; }}
    location ^~ /dicom-web/workitems {{
      proxy_pass http://readroom_worklist;
      proxy_set_header Connection "";
      {proxy_common}
    }}
    location ^~ /dicom-web/subscribers/ {{
      proxy_pass http://readroom_worklist;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      {proxy_common.replace("proxy_read_timeout 600s", "proxy_read_timeout 3600s")}
    }}
    location ^~ /dicom-web/ {{
      auth_request /_readroom_auth;
      proxy_pass http://readroom_orthanc;
      proxy_set_header Connection "";
      proxy_set_header Authorization "{orthanc_basic_header}";
      {proxy_common}
      # Unbuffered, nginx passes on what each read from Orthanc returned as one chunk: with the default 4 KB
      # proxy_buffer_size a 300-slice series reaches the client in ~40 000 chunks (CPU per chunk in nginx
      # and in every client); 256 KB reads make that a few hundred and hold nothing back.
      proxy_buffer_size 256k;
      proxy_buffers 4 256k;
      proxy_busy_buffers_size 512k;
    }}
    location / {{ return 404; }}
  }}
}}
"""
    write_private(layout.nginx_conf, text)   # holds the internal Orthanc credential
    return layout.nginx_conf
