#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (checked in).

Rerun after changing it: python3 tests/fuzz/make_corpus.py. Seeds are small valid inputs (and a
few near-misses) for the fuzzer to mutate; the corpus a long run grows stays outside the tree
(scripts/fuzz.sh --corpus-out DIR keeps it).
"""
import hashlib
import pathlib
import re
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def be32(value):
    return struct.pack(">I", value)


def frame(tag, body):
    return tag + be32(len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def startup(version, params):
    body = be32(version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return be32(len(body) + 4) + body


def corpus_sql(limit):
    """The first statements of tests/data/sql_corpus.txt, one per case (a case ends at '=>')."""
    texts, current = [], []
    for line in (ROOT / "tests" / "data" / "sql_corpus.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("=>"):
            if current:
                texts.append("\n".join(current))
            current = []
        elif line.strip():
            current.append(line)
    # Every few cases, so that the seeds cover all sections of the corpus.
    step = max(1, len(texts) // limit)
    return texts[::step][:limit]


def write(target, seeds):
    directory = CORPUS / target
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, data in seeds:
        safe = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:40]
        digest = hashlib.sha1(data).hexdigest()[:8]
        (directory / f"{safe}-{digest}").write_bytes(data)


def frame_seeds():
    client, server, large = 0, 1, 2
    query = frame(b"Q", cstr("SELECT 1"))
    parse = frame(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack(">HI", 1, 23))
    bind = frame(b"B", b"\0" + cstr("s1") + struct.pack(">HH", 0, 1) + be32(1) + b"7" + struct.pack(">H", 0))
    extended = parse + bind + frame(b"D", b"P\0") + frame(b"E", b"\0" + be32(0)) + frame(b"S", b"")
    copy = frame(b"Q", cstr("COPY t FROM STDIN")) + frame(b"d", b"1\tx\n" * 20) + frame(b"c", b"")
    function_call = frame(b"F", be32(764) + struct.pack(">HHH", 0, 0, 0) + struct.pack(">H", 0))
    auth_ok = frame(b"R", be32(0))
    sasl = frame(b"R", be32(10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
    status = frame(b"S", cstr("standard_conforming_strings") + cstr("on"))
    key = frame(b"K", be32(4242) + be32(0x1234567))
    ready = frame(b"Z", b"I")
    error = frame(b"E", b"SERROR\0VERROR\0C42501\0Mpermission denied\0\0")
    rows = frame(b"T", struct.pack(">H", 1) + cstr("a") + be32(0) + struct.pack(">H", 0) + be32(23) +
                 struct.pack(">hiH", 4, -1, 0)) + frame(b"D", struct.pack(">H", 1) + be32(1) + b"1") + \
        frame(b"C", cstr("SELECT 1"))
    return [
        ("client query whole", bytes([client, 255]) + query + frame(b"X", b"")),
        ("client query byte by byte", bytes([client, 0]) + query),
        ("client extended", bytes([client, 3]) + extended),
        ("client copy", bytes([client, 17]) + copy),
        ("client function call", bytes([client, 5]) + function_call),
        ("client pipelined queries", bytes([client, 40]) + query * 3 + parse + frame(b"S", b"")),
        ("client bad length", bytes([client, 255]) + query + b"Q" + be32(2) + b"xx"),
        ("client too long", bytes([client, 255]) + b"Q" + be32(9000) + b"SELECT"),
        ("client large message start", bytes([client | large, 200]) + b"Q" + be32(70000) + b"SELECT '" + b"x" * 300),
        ("server login", bytes([server, 255]) + sasl + auth_ok + status + key + ready),
        ("server login in pieces", bytes([server, 6]) + auth_ok + status + key + ready),
        ("server rows and error", bytes([server, 11]) + rows + error + ready),
        ("server notice", bytes([server, 255]) + frame(b"N", b"SNOTICE\0C00000\0Mhello\0\0") + ready),
        ("server negotiate", bytes([server, 255]) + frame(b"v", be32(0x30000) + be32(1) + cstr("_pq_.x"))),
    ]


def startup_seeds():
    v3 = 196608
    return [
        ("startup", startup(v3, [("user", "agent"), ("database", "app")])),
        ("startup application", startup(v3, [("user", "agent"), ("database", "app"), ("application_name", "psql"),
                                             ("client_encoding", "UTF8"), ("DateStyle", "ISO")])),
        ("duplicate user", startup(v3, [("user", "agent"), ("database", "app"), ("user", "postgres")])),
        ("duplicate options", startup(v3, [("user", "agent"), ("options", "-c search_path=x"),
                                           ("options", "-c role=postgres")])),
        ("options", startup(v3, [("user", "agent"), ("options", "-c statement_timeout=5 --lock_timeout=1 -crole=x\\ y")])),
        ("replication", startup(v3, [("user", "agent"), ("replication", "database")])),
        ("protected setting", startup(v3, [("user", "agent"), ("session_replication_role", "replica")])),
        ("protocol 3.1 pq option", startup(v3 + 1, [("user", "agent"), ("_pq_.compression", "on")])),
        ("protocol 2", startup(0x20000, [("user", "agent")])),
        ("ssl request", be32(8) + be32(80877103)),
        ("gssenc request", be32(8) + be32(80877104)),
        ("cancel request", be32(16) + be32(80877102) + be32(4242) + be32(0x1234567)),
        # Bodies without the length field: the target puts the right length in front.
        ("body startup", startup(v3, [("user", "agent"), ("database", "app")])[4:]),
        ("body duplicate", startup(v3, [("user", "a"), ("user", "b")])[4:]),
        ("body unterminated", be32(v3) + b"user\0agent"),
    ]


def literal_shape_seeds():
    extra = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
        "UPDATE t SET name = 'it''s', price = 10.25 WHERE id = 30000",
        "SELECT a$b, \"we\"\"ird\", 'x''y', 3.14, 42 FROM t",
        "SELECT 2147483648, 1.5, '' FROM t WHERE a IN (1, 2, 3)",
        "SELECT 'a'\n'b'",
        "SELECT 1e5, .5, 1., 0x1F",
        "SELECT E'a\\nb' -- comment",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') RETURNING id",
    ]
    return [(text[:30], text.encode()) for text in corpus_sql(30) + extra]


def policy_seeds():
    seeds = [(path.stem, path.read_bytes()) for path in [ROOT / "policies" / "default.yaml",
                                                        ROOT / "tests" / "data" / "policy_custom.yaml",
                                                        ROOT / "tests" / "data" / "policy_audit_only.yaml"]]
    seeds += [
        ("minimal", b"version: 1\nrules:\n  - name: all\n"),
        ("flow style", b"{version: 1, mode: audit_only, rules: [{name: a, match: {users: [x, 'y*']}, ddl: allow},"
                       b" {name: b}]}\n"),
        ("clients", b"version: 1\nrules:\n  - name: lan\n    match: {clients: [10.0.0.0/8, 'fd00::/8', 192.168.1.7]}\n"
                    b"    options: [search_path]\n  - name: rest\n    allow_classes: [read]\n"),
        ("anchors", b"version: 1\ndefaults: &d\n  denied_functions: [pg_sleep, 'public.export_*']\n"
                    b"rules:\n  - name: r\n    denied_functions: [a]\n"),
        ("duplicate key", b"version: 1\nversion: 1\nrules:\n  - name: r\n"),
        ("bad type", b"version: one\nrules: {}\n"),
    ]
    return seeds


def analyze_seeds():
    seeds = []
    for index, text in enumerate(corpus_sql(40)):
        seeds.append((text[:30], bytes([0]) + text.encode()))
    lexing = [
        (1, "SELECT 'x\\''; CREATE TABLE evil(x int); --'"),
        (1, "SELECT E'\\'' || 'a\\\\'; DROP TABLE t"),
        (2, "SELECT '\x95\\'; DELETE FROM t; --'"),
        (4, "SELECT 'caf\xc3\xa9'"),
        (8, "ALTER TABLE profiles ADD COLUMN timezone text"),
        (0, "SELECT * FROM pgrail.migrate_up('20261125090000')"),
        (0, "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$; SELECT 1"),
        (0, "PREPARE p AS DELETE FROM t; EXPLAIN ANALYZE UPDATE t SET a = 1"),
        (0, "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3"),
        (0, "SELECT ((((((((((1))))))))))"),
        (0, "/* unterminated"),
        (0, "COPY t TO PROGRAM 'cat'; SET search_path = evil"),
    ]
    for flags, text in lexing:
        seeds.append((f"lexing{flags} {text[:24]}", bytes([flags]) + text.encode("latin-1")))
    return seeds


def auth_seeds():
    """Flags byte (bit 0: channel binding, 1: mock, 2: -PLUS chosen; bits 4-5: server, client,
    verifier, identities), then the first message, a NUL, the second."""
    verifier = (b"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                b"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
    final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    return [
        ("server plain", b"\x00n,,n=,r=rOprNGfwEbeRWgbNEkqO\0" + final),
        ("server y", b"\x00y,,n=user,r=abc,x=ext\0c=eSws,r=abc,p=AAAA"),
        ("server plus", b"\x05p=tls-server-end-point,,n=,r=abc\0c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=abc,p=x"),
        ("server mock", b"\x02n,,n=,r=abc\0" + final),
        ("client", b"\x10r=fuzznonceXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096\0v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        ("client error", b"\x11r=fuzznonce1,s=QUJD,i=16\0e=invalid-proof"),
        ("verifier", b"\x20" + verifier),
        ("saslprep", b"\x20I\xc2\xadX \xef\xb7\xba \xc2\xa0caf\xc3\xa9 \xd8\xa71 \xff"),
        ("identities", b"\x30identities:\n  - {name: agent-7, role: agent, verifier: \"" + verifier +
                       b"\"}\nroles:\n  agent: {password_file: agent.pw}\n"),
        ("identities env", b"\x30{identities: [], roles: {r: {password_env: X}}}\n"),
    ]


def main():
    write("frame", frame_seeds())
    write("startup", startup_seeds())
    write("literal_shape", literal_shape_seeds())
    write("policy", policy_seeds())
    write("analyze", analyze_seeds())
    write("auth", auth_seeds())
    for target in sorted(CORPUS.iterdir()):
        print(f"{target.name}: {len(list(target.iterdir()))} seeds")


if __name__ == "__main__":
    main()
