"""Writes random ssh_config cases for tests/ssh_config_vs_openssh.rs (not run by default).

Usage: python3 generate_random_cases.py SEED COUNT   (writes /tmp/fuzzcases/gNNN.conf)
then:  PGTUNNEL_SSH_CONFIG_CASES=/tmp/fuzzcases cargo test --test ssh_config_vs_openssh resolution
Queries that OpenSSH refuses (e.g. a jumphost loop) are reported with whether we refused too.
"""
import os
os.makedirs("/tmp/fuzzcases", exist_ok=True)
import random, sys
random.seed(int(sys.argv[1]))
hosts = ["db", "web", "DB", "db.prod", "x.example.com", "bastion", "Web.Prod", "10.1.2.3"]
pats = ["db", "web", "*", "*.prod", "!db.prod", "db*", "?b", "DB", "*.example.com", "!web", "bastion", "x.*", "10.*", "\"db\"", "real.example"]
users = ["alice", "bob", "deploy", "root"]
vals = {
 "HostName": ["%h.internal", "real.example", "Real.Example", "%h", "db.prod", "\"quoted.example\"", "%%h"],
 "User": users + ["\"a b\"", "al#ice"],
 "Port": ["22","2200","022","2222", "ssh"],
 "IdentityFile": ["~/.ssh/id_%h", "~/.ssh/a", "%d/k_%r", "${PGT_VAR}/k", "none", "~/.ssh/%C", "\"~/.ssh/sp ace\"", "~/.ssh/%k_%n_%p", "~root/.ssh/x"],
 "CertificateFile": ["~/.ssh/c_%h", "~/.ssh/c", "${HOME}/c_%u"],
 "ProxyJump": ["none", "bastion", "u@gw:2222,bastion", "ssh://j@gw2/", "[fd00::1]:22", "gw # c", "a,b,c"],
 "ProxyCommand": ["none", "nc %h %p", "ssh -W %h:%p gw # keep", "\"quoted\" cmd"],
 "ConnectTimeout": ["none","0","5","1m", "1h2m3s"],
 "UserKnownHostsFile": ["none","~/.ssh/kh_%h","/tmp/a /tmp/b_%p", "${HOME}/kh %d/kh2"],
 "GlobalKnownHostsFile": ["none","~/g","/etc/g1 /etc/g2"],
 "StrictHostKeyChecking": ["yes","no","ask","accept-new","off","TRUE"],
 "HostKeyAlias": ["Alias1","db-key"],
 "ServerAliveInterval": ["none","0","30","2m"],
 "ServerAliveCountMax": ["0","5"],
 "IdentityAgent": ["none","SSH_AUTH_SOCK","~/agent_%h","${PGT_VAR}/a"],
 "IdentitiesOnly": ["yes","no","true"], "HashKnownHosts": ["yes","no"],
 "PubkeyAuthentication": ["yes","no","unbound","host-bound"], "PasswordAuthentication": ["yes","no"],
 "KbdInteractiveAuthentication": ["yes","no"], "ChallengeResponseAuthentication": ["yes","no"],
}
def val():
    k = random.choice(list(vals))
    v = random.choice(vals[k])
    sep = random.choice([" ", "=", " = ", "\t", "  "])
    kk = random.choice([k, k.lower(), k.upper()])
    tail = random.choice(["", "", "", " # comment"]) if k != "ProxyCommand" else ""
    indent = random.choice(["  ", "", "\t"])
    return indent + kk + sep + v + tail
def header():
    if random.random() < 0.5:
        return "Host " + " ".join(random.sample(pats, random.randint(1,3)))
    if random.random() < 0.1:
        return random.choice(["Match all", "Match final all", "Match !all"])
    crit = []
    for _ in range(random.randint(1,3)):
        c = random.choice(["host","originalhost","user","localuser","final","canonical","!host","!user","!final","!originalhost"])
        if "final" in c or c == "canonical":
            crit.append(c)
        elif "user" in c and "local" not in c:
            crit.append(c + " " + ",".join(random.sample(users, 2)))
        elif c == "localuser":
            crit.append("localuser " + random.choice(["root","nobody","*"]))
        else:
            crit.append(c + " " + ",".join(random.sample(["db","web","*","*.prod","real.example","*.internal","!db*","bastion"], 2)))
    return "Match " + " ".join(crit)
for n in range(int(sys.argv[2])):
    files = {}
    lines = []
    for _ in range(random.randint(1,5)):
        lines.append(header())
        for _ in range(random.randint(1,4)):
            if random.random() < 0.1:
                name = "inc%d.conf" % len(files)
                files[name] = "\n".join([val() for _ in range(2)] + [header(), val()]) + "\n"
                lines.append("  Include @DIR@/" + name)
            else:
                lines.append(val())
    qs = []
    for h in random.sample(hosts, 3):
        q = h
        if random.random() < 0.3: q = random.choice(users) + "@" + q
        if random.random() < 0.2: q = q + ":2022"
        qs.append("# query: " + q)
    text = "\n".join(qs + lines) + "\n"
    for name, body in files.items():
        text += "--- file: " + name + "\n" + body
    open("/tmp/fuzzcases/g%03d.conf" % n, "w").write(text)
