# Records the PDUs real libldap clients send, answering each with success.
import socket, sys, threading, os
out = sys.argv[1]
def tlv(tag, content):
    n = len(content)
    if n < 0x80: l = bytes([n])
    else:
        b = n.to_bytes((n.bit_length()+7)//8, 'big'); l = bytes([0x80|len(b)]) + b
    return bytes([tag]) + l + content
def result(tag, msgid, extra=b''):
    return tlv(0x30, tlv(0x02, msgid) + tlv(tag, tlv(0x0a, b'\x00') + tlv(4, b'') + tlv(4, b'') + extra))
RESP = {0x60:0x61, 0x63:0x65, 0x66:0x67, 0x68:0x69, 0x4a:0x6b, 0x6c:0x6d, 0x6e:0x6f, 0x77:0x78}
count = [0]
def serve(conn):
    buf = b''
    while True:
        d = conn.recv(65536)
        if not d: break
        buf += d
        while len(buf) >= 2:
            l = buf[1]; hl = 2
            if l & 0x80: n = l & 0x7f; l = int.from_bytes(buf[2:2+n], 'big'); hl = 2+n
            if len(buf) < hl + l: break
            pdu, buf = buf[:hl+l], buf[hl+l:]
            count[0] += 1
            open(os.path.join(out, 'req-%03d' % count[0]), 'wb').write(pdu)
            body = pdu[hl:]
            idl = body[1]; msgid = body[2:2+idl]; op = body[2+idl]
            if op == 0x63:
                entry = tlv(0x30, tlv(2, msgid) + tlv(0x64, tlv(4, b'') + tlv(0x30, tlv(0x30, tlv(4, b'namingContexts') + tlv(0x31, tlv(4, b'dc=example,dc=com'))))))
                conn.sendall(entry)
            if op in RESP:
                code = 0x6f if op == 0x6e else RESP[op]
                conn.sendall(result(code, msgid, b'' if op != 0x6e else b''))
            if op == 0x42: conn.close(); return
    conn.close()
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
