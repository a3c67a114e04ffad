"""Test certificates and JWT keys for the security tests, made with the `openssl` command in a given folder.

    pki = make_test_pki(folder)           # everything test_security.py needs, see SecurityPKI
    pki.ca.cert                           # the test CA's certificate (PEM), pki.ca.key its key
    pki.server.cert, pki.server.key       # localhost (DNS:localhost, IP:127.0.0.1), signed by the test CA

    ca = CertificateAuthority.create(folder, "my-ca", "My CA")
    leaf = ca.issue("name", cn="localhost", sans=["DNS:localhost", "IP:127.0.0.1"])          # server
    leaf = ca.issue("name", cn="edge-pi-1", usage="clientAuth")                             # client
    leaf = ca.issue("name", cn="localhost", sans=[...], not_before="20200101000000Z",
                    not_after="20200102000000Z")                                            # expired

    keys = jwt_key_pair(folder, "ES256")  # or "EdDSA" (Ed25519), "RS256": PEM files
    token = sign_jwt({"sub": "x", "roles": ["consume"], "exp": ...}, keys)

Every key is EC P-256 (PKCS#8 PEM) unless said otherwise. OpenSSL 3.0's `x509 -req` cannot set a start
date, so certificates with fixed dates go through `openssl ca` with a minimal configuration of its own.
JWTs are signed with PyJWT when it is importable, else by hand with `cryptography`.
"""
import base64
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl(*args, cwd=None):
    """Runs `openssl ARGS...`; raises RuntimeError with openssl's stderr when it fails."""
    argv = ["openssl", *[str(a) for a in args]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def ec_key(path):
    """A new EC P-256 private key at path (PKCS#8 PEM)."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return Path(path)


@dataclass(frozen=True)
class KeyPair:
    """A certificate (PEM) and its private key (PEM)."""
    cert: Path
    key: Path

    def pem(self):
        return self.cert.read_bytes()


@dataclass(frozen=True)
class CertificateAuthority:
    folder: Path
    name: str
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder, name, common_name):
        folder = Path(folder)
        key = ec_key(folder / f"{name}.key")
        cert = folder / f"{name}.pem"
        openssl("req", "-x509", "-new", "-key", key, "-sha256", "-days", "3650", "-subj", f"/CN={common_name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert)
        return cls(folder, name, cert, key)

    def pem(self):
        return self.cert.read_bytes()

    def issue(self, name, cn, sans=(), usage="serverAuth", not_before=None, not_after=None, days=30):
        """A leaf certificate signed by this CA, files NAME.pem and NAME.key. usage: serverAuth or clientAuth
        (extendedKeyUsage). not_before/not_after (YYYYMMDDHHMMSSZ, both or neither) fix its validity."""
        key = ec_key(self.folder / f"{name}.key")
        csr = self.folder / f"{name}.csr"
        cert = self.folder / f"{name}.pem"
        openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        extensions = self.folder / f"{name}.ext"
        lines = ["[leaf]", "basicConstraints = critical, CA:FALSE",
                 "keyUsage = critical, digitalSignature, keyEncipherment",
                 f"extendedKeyUsage = {usage}", "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid"]
        if sans:
            lines.append("subjectAltName = " + ", ".join(sans))
        extensions.write_text("\n".join(lines) + "\n")
        if not_before is None and not_after is None:
            openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                    "-set_serial", f"0x{secrets.token_hex(12)}", "-days", days, "-sha256",
                    "-extfile", extensions, "-extensions", "leaf", "-out", cert)
        else:
            self._sign_with_dates(csr, cert, extensions, not_before, not_after)
        return KeyPair(cert, key)

    def _sign_with_dates(self, csr, cert, extensions, not_before, not_after):
        """`openssl ca` with a throwaway database: the only way in OpenSSL 3.0 to pick both dates."""
        state = self.folder / f"{self.name}-ca-state"
        (state / "new").mkdir(parents=True, exist_ok=True)
        index = state / "index.txt"
        if not index.exists():
            index.write_text("")
        (state / "serial").write_text(secrets.token_hex(12).upper() + "\n")
        config = state / "ca.cnf"
        config.write_text("\n".join([
            "[ca]", "default_ca = test_ca", "",
            "[test_ca]", f"dir = {state}", f"database = {index}", f"new_certs_dir = {state / 'new'}",
            f"certificate = {self.cert}", f"private_key = {self.key}", f"serial = {state / 'serial'}",
            "default_md = sha256", "policy = any_name", "unique_subject = no", "copy_extensions = none",
            "default_days = 1", "",
            "[any_name]", "commonName = supplied", ""]))
        openssl("ca", "-batch", "-config", config, "-notext", "-in", csr, "-out", cert,
                "-startdate", not_before, "-enddate", not_after, "-extfile", extensions, "-extensions", "leaf")


@dataclass(frozen=True)
class SecurityPKI:
    """The certificates of the security tests (see make_test_pki)."""
    ca: CertificateAuthority              # the test CA
    server: KeyPair                       # localhost: DNS:localhost, IP:127.0.0.1, by the test CA
    rotated: KeyPair                      # CN rotated, same SANs, by the test CA (certificate rotation)
    expired: KeyPair                      # localhost, valid 2020-01-01 to 2020-01-02 only, by the test CA
    other_name: KeyPair                   # other.example (DNS:other.example only), by the test CA
    unknown_ca: CertificateAuthority      # a second, unrelated CA
    unknown_ca_server: KeyPair            # localhost (DNS:localhost, IP:127.0.0.1) by the unrelated CA
    client: KeyPair                       # client certificate CN edge-pi-1 by the test CA
    client_other_cn: KeyPair              # client certificate CN edge-pi-2 by the test CA
    client_unknown_ca: KeyPair            # client certificate CN edge-pi-1 by the unrelated CA


LOCALHOST_SANS = ("DNS:localhost", "IP:127.0.0.1")


def make_test_pki(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create(folder, "test-ca", "FrameRelay Test CA")
    unknown = CertificateAuthority.create(folder, "unknown-ca", "Unrelated Test CA")
    return SecurityPKI(
        ca=ca,
        server=ca.issue("server", "localhost", LOCALHOST_SANS),
        rotated=ca.issue("rotated", "rotated", LOCALHOST_SANS),
        expired=ca.issue("expired", "localhost", LOCALHOST_SANS,
                         not_before="20200101000000Z", not_after="20200102000000Z"),
        other_name=ca.issue("other-name", "other.example", ("DNS:other.example",)),
        unknown_ca=unknown,
        unknown_ca_server=unknown.issue("unknown-ca-server", "localhost", LOCALHOST_SANS),
        client=ca.issue("client", "edge-pi-1", usage="clientAuth"),
        client_other_cn=ca.issue("client-other-cn", "edge-pi-2", usage="clientAuth"),
        client_unknown_ca=unknown.issue("client-unknown-ca", "edge-pi-1", usage="clientAuth"),
    )


# ---------------------------------------------------------------- JWT

@dataclass(frozen=True)
class JWTKeys:
    algorithm: str    # the JWT "alg": ES256, EdDSA or RS256
    private: Path     # PEM (PKCS#8)
    public: Path      # PEM (SubjectPublicKeyInfo), what --jwt-public-key reads


def jwt_key_pair(folder, algorithm, name=None):
    """A new key pair for `algorithm` (ES256: EC P-256, EdDSA: Ed25519, RS256: RSA 2048) in folder."""
    folder = Path(folder)
    name = name or f"jwt-{algorithm.lower()}-{secrets.token_hex(4)}"
    private, public = folder / f"{name}.key", folder / f"{name}.pub.pem"
    if algorithm == "ES256":
        ec_key(private)
    elif algorithm == "EdDSA":
        openssl("genpkey", "-algorithm", "ED25519", "-out", private)
    elif algorithm == "RS256":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private)
    else:
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    openssl("pkey", "-in", private, "-pubout", "-out", public)
    return JWTKeys(algorithm, private, public)


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_by_hand(claims, keys):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    header = {"alg": keys.algorithm, "typ": "JWT"}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
    private = serialization.load_pem_private_key(keys.private.read_bytes(), password=None)
    if keys.algorithm == "ES256":
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants raw r || s, not DER
    elif keys.algorithm == "EdDSA":
        signature = private.sign(signing_input)
    else:
        signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + _b64url(signature)


def sign_jwt(claims, keys):
    """A compact JWS of the claims (a dict), signed with keys.private using keys.algorithm."""
    try:
        import jwt
    except ImportError:
        return _sign_by_hand(claims, keys)
    token = jwt.encode(claims, keys.private.read_bytes(), algorithm=keys.algorithm)
    return token.decode() if isinstance(token, bytes) else token


def _self_test():
    """Makes the PKI in a temporary folder and checks it with `openssl verify`."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        pki = make_test_pki(folder)
        for pair in (pki.server, pki.rotated, pki.other_name, pki.client, pki.client_other_cn):
            openssl("verify", "-CAfile", pki.ca.cert, pair.cert)
        for pair in (pki.unknown_ca_server, pki.client_unknown_ca):
            openssl("verify", "-CAfile", pki.unknown_ca.cert, pair.cert)
        try:
            openssl("verify", "-CAfile", pki.ca.cert, pki.expired.cert)
            raise AssertionError("the expired certificate verified")
        except RuntimeError as error:
            assert "expired" in str(error), error
        print(openssl("x509", "-in", pki.expired.cert, "-noout", "-dates", "-subject", "-ext", "subjectAltName"))
        for algorithm in ("ES256", "EdDSA", "RS256"):
            keys = jwt_key_pair(folder, algorithm)
            claims = {"sub": "self-test", "roles": ["consume"]}
            for token in (sign_jwt(claims, keys), _sign_by_hand(claims, keys)):
                import jwt
                decoded = jwt.decode(token, keys.public.read_bytes(), algorithms=[algorithm])
                assert decoded == claims, decoded
        print("certs self-test ok")


if __name__ == "__main__":
    _self_test()
