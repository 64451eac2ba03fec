# How fuzz/corpus was first seeded (kept for reference; the corpus has been
# minimised since): python3 gen.py DIR, run in a directory holding req/, the
# PDUs capture.py recorded from libldap's tools (ldapsearch, ldapwhoami,
# ldapmodify, ldapdelete, ldapcompare, ldappasswd, ldapexop) pointed at it.
import os, glob, hashlib, sys
root = sys.argv[1]
def tlv(tag, content):
    n = len(content)
    if n < 0x80: l = bytes([n])
    else:
        b = n.to_bytes((n.bit_length()+7)//8, 'big'); l = bytes([0x80|len(b)]) + b
    return bytes([tag]) + l + content
def msg(msgid, op, controls=b''):
    return tlv(0x30, tlv(2, bytes([msgid])) + op + (tlv(0xa0, controls) if controls else b''))
def res(tag, code, diag=b'', extra=b''):
    return tlv(tag, tlv(0x0a, bytes([code])) + tlv(4, b'') + tlv(4, diag) + extra)
def put(target, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, hashlib.sha1(data).hexdigest()), 'wb').write(data)
reqs = sorted({open(f,'rb').read() for f in glob.glob('req/*')})
ppolicy = tlv(0x30, tlv(4, b'1.3.6.1.4.1.42.2.27.8.5.1') + tlv(4, tlv(0x30, tlv(0xa0, tlv(0x80, b'\x00\x05')))))
resps = [
    msg(1, res(0x61, 0)),
    msg(1, res(0x61, 49, b'80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563\x00')),
    msg(2, res(0x61, 49, b'', b''), ppolicy),
    msg(2, tlv(0x64, tlv(4, b'') + tlv(0x30, tlv(0x30, tlv(4, b'supportedExtension') + tlv(0x31, tlv(4, b'1.3.6.1.4.1.1466.20037') + tlv(4, b'1.3.6.1.4.1.4203.1.11.1') + tlv(4, b'1.3.6.1.4.1.4203.1.11.3'))) + tlv(0x30, tlv(4, b'namingContexts') + tlv(0x31, tlv(4, b'dc=example,dc=com')))))),
    msg(2, tlv(0x64, tlv(4, b'uid=alice,ou=people,dc=example,dc=com') + tlv(0x30, tlv(0x30, tlv(4, b'objectGUID') + tlv(0x31, tlv(4, bytes(range(16)))))))),
    msg(2, tlv(0x73, tlv(4, b'ldap://dc2.example.com/CN=Configuration,DC=example,DC=com'))),
    msg(2, res(0x65, 0)),
    msg(3, res(0x65, 118)),
    msg(3, tlv(0x79, tlv(0x80, b'1.3.6.1.4.1.4203.1.9.1.4') + tlv(0x81, tlv(0xa2, tlv(4, b'cookie'))))),
    msg(4, res(0x78, 0, b'', tlv(0x8a, b'1.3.6.1.4.1.4203.1.11.3') + tlv(0x8b, b'dn:cn=admin,dc=example,dc=com'))),
    msg(4, res(0x67, 50, b'insufficient access')),
    msg(5, res(0x6f, 6)),
    msg(0, res(0x78, 52, b'shutting down', tlv(0x8a, b'1.3.6.1.4.1.1466.20036'))),
]
L6 = b'\x06'
for p in reqs + resps:
    put('pdu', L6 + p)
put('pdu', L6 + reqs[0] + reqs[1])
put('pdu', b'\x02' + b'\x30\x84\x00\x00\x00\x0c' + reqs[-1][2:])  # long-form length, as AD writes
for p in reqs:
    for flags in (0x00, 0x14, 0x23, 0x5c):
        put('request_policy', bytes([flags]) + p)
# response_route: head (steps, limit), steps (kind, a, b), then the responses
stream = b''.join(resps[:-1])
put('response_route', bytes([0x23]) + bytes([0, 1, 1, 0, 2, 0, 7, 2, 1]) + stream)
put('response_route', bytes([0x24]) + bytes([0, 2, 0, 3, 3, 0, 4, 2, 0, 5, 4, 3]) + stream + resps[-1])
put('response_route', bytes([0x21]) + bytes([6, 1, 0]) + resps[0] + resps[1][:9])
put('response_route', bytes([0xe2]) + bytes([7, 2, 2, 0, 2, 0]) + resps[3] + resps[6])
dns = [b'', b'dc=example,dc=com', b'ou=people,dc=example,dc=com', b'uid=alice,ou=people,dc=example,dc=com',
       b'CN=Aggregate,CN=Schema,CN=Configuration,DC=example,DC=com', b'cn=Subschema',
       b'cn=Smith\\, John+uid=js,OU=People;dc=example, DC=com', b'OID.2.5.4.3=a\\2cb\\ ,domainComponent=example',
       b'gateTeam=Blue,gateUnit=12 34,ou=people,dc=example,dc=com', b'cn=\xe5\xbc\xa0\xe4\xb8\x89,ou=\xe7\xa0\x94\xe5\x8f\x91,dc=example,dc=com',
       b'cn=#04024869,dc=x', b'uid=a\\;b,dc=x']
for i, a in enumerate(dns):
    put('dn', a)
    put('dn', a + b'\x00' + dns[(i + 2) % len(dns)])
    put('dn', a + b'\x00' + dns[2])
search = [p for p in reqs if p.startswith(b'\x30\x81\xb7')]
filters = []
for login in [b'alice', b'*)(uid=*', b'a\\2a\x00(objectClass=*)', '张三@example.com'.encode(), b'13800138000', b'']:
    for k in (0, 1):
        put('filter', bytes([k]) + login + b'\x00' + b'\xa0\x1f\xa3\x0e\x04\x03uid\x04\x07alice\x00\x87\x0bobjectClass')
        put('filter', bytes([k + 4]) + login)
cfgs = [open(os.path.join(os.path.dirname(__file__), '../../config/ldapgate.toml'),'rb').read(),
 b'[server]\nldap_listen = ["127.0.0.1:1389"]\n[directory]\nservers = ["ldap://127.0.0.1:389"]\nstarttls = false\nbase_dn = "dc=example,dc=com"\n',
 b'[server]\nldaps_listen = ["127.0.0.1:1636"]\ntls_cert = "c.pem"\ntls_key = "k.pem"\nrequire_tls = true\nidle_timeout = "5x"\nmax_connections = 0\n[directory]\nkind = "ad"\nservers = ["ldaps://dc1:636", "ftp://x"]\npins = ["sha256/AAAA", "sha256:00:11"]\nbase_dn = "cn=a,,dc=x"\n[ratelimit]\nbinds_per_ip = "50/q"\n[control]\nlisten = "127.0.0.1:8443"\ntoken_sha256 = ["zz"]\n[sync]\nchange_tracking = "maybe"\nmax_account_deletes = -1\n[unknown]\nx = 1\n']
for c in cfgs: put('config', c)
