"""Certificates for the test API server, made with the openssl command line tool: a CA, a server
certificate for 127.0.0.1 / ::1 / localhost / apiserver.test / kubernetes.default.svc, and a
client certificate (CN system:node:node-a) for mutual TLS. EC P-256 keys: instant to generate."""

import os
import subprocess
from dataclasses import dataclass

SERVER_SANS = "DNS:localhost,DNS:apiserver.test,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:::1"


@dataclass
class Bundle:
    dir: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _key(path, cwd):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path, cwd=cwd)


def make_ca(dir, name="ca"):
    """A self-signed CA; returns (cert, key) paths."""
    os.makedirs(dir, exist_ok=True)
    key, cert = name + ".key", name + ".crt"
    _key(key, dir)
    _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3650", "-subj",
             "/CN=sliceproxy-test-%s" % name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
    return os.path.join(dir, cert), os.path.join(dir, key)


def sign(dir, name, subject, ca_cert, ca_key, sans=None, usage="serverAuth"):
    """A leaf certificate signed by the CA; returns (cert, key) paths."""
    key, csr, cert, ext = name + ".key", name + ".csr", name + ".crt", name + ".ext"
    _key(key, dir)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject, cwd=dir)
    with open(os.path.join(dir, ext), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
        f.write("extendedKeyUsage=%s\n" % usage)
        if sans:
            f.write("subjectAltName=%s\n" % sans)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "365", "-extfile", ext, cwd=dir)
    return os.path.join(dir, cert), os.path.join(dir, key)


def generate(dir):
    os.makedirs(dir, exist_ok=True)
    ca_cert, ca_key = make_ca(dir, "ca")
    server_cert, server_key = sign(dir, "server", "/CN=kube-apiserver", ca_cert, ca_key, SERVER_SANS)
    client_cert, client_key = sign(dir, "client", "/O=system:nodes/CN=system:node:node-a", ca_cert,
                                   ca_key, usage="clientAuth")
    return Bundle(dir, ca_cert, ca_key, server_cert, server_key, client_cert, client_key)
