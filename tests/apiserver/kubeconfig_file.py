"""Writes kubeconfig files for the test API server."""

import base64
import os


def _q(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def _data(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write(path, server, ca=None, token=None, token_file=None, client_cert=None, client_key=None,
          embed=False, insecure=False, tls_server_name=None, context="test", exec_command=None,
          exec_env=None):
    """One cluster, one user, one context (made current). embed=True puts the CA and client
    certificate into *-data fields instead of naming the files. exec_command: a client-go exec
    credential plugin (client.authentication.k8s.io/v1) with exec_env ({name: value})."""
    cluster = ["    server: %s" % _q(server)]
    if ca:
        cluster.append("    certificate-authority-data: %s" % _data(ca) if embed
                       else "    certificate-authority: %s" % _q(ca))
    if insecure:
        cluster.append("    insecure-skip-tls-verify: true")
    if tls_server_name:
        cluster.append("    tls-server-name: %s" % _q(tls_server_name))
    user = []
    if token:
        user.append("    token: %s" % _q(token))
    if token_file:
        user.append("    tokenFile: %s" % _q(token_file))
    if client_cert:
        if embed:
            user.append("    client-certificate-data: %s" % _data(client_cert))
            user.append("    client-key-data: %s" % _data(client_key))
        else:
            user.append("    client-certificate: %s" % _q(client_cert))
            user.append("    client-key: %s" % _q(client_key))
    if exec_command:
        user += ["    exec:",
                 "      apiVersion: client.authentication.k8s.io/v1",
                 "      interactiveMode: IfAvailable",
                 "      command: %s" % _q(exec_command)]
        if exec_env:
            user.append("      env:")
            for name, value in exec_env.items():
                user += ["      - name: %s" % _q(name), "        value: %s" % _q(value)]
    text = "\n".join([
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: test-cluster",
        "  cluster:",
        *cluster,
        "users:",
        "- name: test-user",
        "  user:" + ("" if user else " {}"),
        *user,
        "contexts:",
        "- name: %s" % context,
        "  context:",
        "    cluster: test-cluster",
        "    user: test-user",
        "    namespace: default",
        "current-context: %s" % context,
        "",
    ])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path
