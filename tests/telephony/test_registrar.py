"""Registrar (digest auth, bindings) and admission control (allow-list, token buckets): pure logic."""

from __future__ import annotations

import pytest

from telephony.guard import AllowList, RateLimiter
from telephony.registrar import Registrar, digest_response, parse_digest
from telephony.sip_message import SipRequest, parse_message


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def register(user: str = "anna", *, contact: str = "<sip:anna@127.0.0.1:5090>", expires: str | None = "600",
             auth: str | None = None, cseq: int = 1, call_id: str = "reg-1") -> SipRequest:
    lines = [
        "REGISTER sip:127.0.0.1:5080 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKr" + str(cseq),
        f"From: <sip:{user}@127.0.0.1>;tag=ft",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: {contact}",
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def answer(challenge: str, password: str, *, user: str = "anna", nc: int = 1, alg: str | None = None,
           uri: str = "sip:127.0.0.1:5080") -> str:
    p = parse_digest(challenge)
    alg = alg or p["algorithm"]
    nc_text = f"{nc:08x}"
    resp = digest_response(alg, user, p["realm"], password, "REGISTER", uri, p["nonce"], nc_text, "c0ffee", "auth")
    return (f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}, cnonce="c0ffee", qop=auth, nc={nc_text}, opaque="{p["opaque"]}"')


def test_rfc7616_md5_example_vector() -> None:
    # RFC 7616 section 3.9.1 (HTTP, MD5): the same computation SIP uses.
    assert digest_response("MD5", "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
                           "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                           "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth") == "8ca523f5e9506fed4657c9700eebdbec"
    assert digest_response("SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
                           "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                           "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth") == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")


@pytest.mark.parametrize("alg_index", [0, 1])
def test_register_with_sha256_and_md5(alg_index: int) -> None:
    clock = Clock()
    reg = Registrar({"anna": "s3cret"}, clock=clock)
    first = reg.handle(register(), ("127.0.0.1", 5090))
    assert first.status == 401
    challenges = [v for k, v in first.headers if k == "WWW-Authenticate"]
    assert [parse_digest(c)["algorithm"] for c in challenges] == ["SHA-256", "MD5"]  # RFC 8760: preferred first
    ok = reg.handle(register(auth=answer(challenges[alg_index], "s3cret"), cseq=2), ("127.0.0.1", 5090))
    assert (ok.status, ok.user) == (200, "anna")
    assert ("Contact", "<sip:anna@127.0.0.1:5090>;expires=600") in ok.headers
    assert reg.lookup("anna") == "sip:anna@127.0.0.1:5090"
    clock.t += 601
    assert reg.lookup("anna") is None  # expired


def test_wrong_password_unknown_user_replay_and_stale() -> None:
    clock = Clock()
    reg = Registrar({"anna": "s3cret"}, nonce_ttl=60, clock=clock)
    ch = dict(reg.handle(register(), ("127.0.0.1", 5090)).headers)["WWW-Authenticate"]
    assert reg.handle(register(auth=answer(ch, "guess"), cseq=2), ("127.0.0.1", 5090)).status == 401
    assert reg.handle(register("bob", auth=answer(ch, "x", user="bob"), cseq=2), ("1.2.3.4", 5)).status == 401
    assert reg.lookup("anna") is None and reg.stats["refused"] == 2
    good = answer(ch, "s3cret", nc=1)
    assert reg.handle(register(auth=good, cseq=3), ("127.0.0.1", 5090)).status == 200
    # the same nonce count again is a replay
    assert reg.handle(register(auth=good, cseq=4), ("127.0.0.1", 5090)).status == 403
    assert reg.handle(register(auth=answer(ch, "s3cret", nc=2), cseq=5), ("127.0.0.1", 5090)).status == 200
    # an expired nonce with the right password: a new challenge with stale=true
    clock.t += 61
    stale = reg.handle(register(auth=answer(ch, "s3cret", nc=3), cseq=6), ("127.0.0.1", 5090))
    assert stale.status == 401 and all("stale=true" in v for _, v in stale.headers)
    # a forged nonce (not signed by us) is never accepted
    forged = ch.replace(parse_digest(ch)["nonce"], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert reg.handle(register(auth=answer(forged, "s3cret"), cseq=7), ("127.0.0.1", 5090)).status == 401


def test_to_user_must_be_the_authenticated_user_and_bad_input() -> None:
    reg = Registrar({"anna": "a", "bob": "b"})
    ch = dict(reg.handle(register(), ("127.0.0.1", 5090)).headers)["WWW-Authenticate"]
    # bob authenticates but tries to bind anna's address
    assert reg.handle(register("anna", auth=answer(ch, "b", user="bob")), ("127.0.0.1", 5)).status == 403
    assert reg.handle(register(auth='Digest username="anna", nonce=', cseq=2), ("127.0.0.1", 5)).status == 401
    assert reg.handle(register(auth=answer(ch, "a").replace("qop=auth", "qop=auth-int"), cseq=3),
                      ("127.0.0.1", 5)).status == 400
    assert reg.handle(register(auth=answer(ch, "a", alg="MD5").replace("algorithm=MD5", "algorithm=SHA-512"),
                               cseq=4), ("127.0.0.1", 5)).status == 400
    with pytest.raises(ValueError, match="unknown digest algorithm"):
        Registrar({}, algorithms=("SHA-1",))


def test_expires_rules_and_unregister() -> None:
    clock = Clock()
    reg = Registrar({"anna": "pw"}, min_expires=60, max_expires=3600, clock=clock)
    src = ("127.0.0.1", 5090)

    def auth(nc: int) -> str:
        ch = dict(reg.handle(register(), src).headers)["WWW-Authenticate"]
        return answer(ch, "pw", nc=nc)

    too_short = reg.handle(register(expires="10", auth=auth(1), cseq=2), src)
    assert too_short.status == 423 and ("Min-Expires", "60") in too_short.headers
    capped = reg.handle(register(expires="99999", auth=auth(1), cseq=3), src)
    assert capped.status == 200 and ("Contact", "<sip:anna@127.0.0.1:5090>;expires=3600") in capped.headers
    two = reg.handle(register(contact="<sip:anna@127.0.0.1:5092>;expires=120", auth=auth(1), cseq=4), src)
    assert two.status == 200 and len(reg.bindings("anna")) == 2
    assert reg.lookup("anna") == "sip:anna@127.0.0.1:5092"  # the newest refresh rings
    gone = reg.handle(register(contact="<sip:anna@127.0.0.1:5092>", expires="0", auth=auth(1), cseq=5), src)
    assert gone.status == 200 and reg.lookup("anna") == "sip:anna@127.0.0.1:5090"
    assert reg.handle(register(contact="*", expires="600", auth=auth(1), cseq=6), src).status == 400
    assert reg.handle(register(contact="*", expires="0", auth=auth(1), cseq=7), src).status == 200
    assert reg.lookup("anna") is None
    assert reg.handle(register(expires="1e3", auth=auth(1), cseq=8), src).status == 400


def test_allow_list() -> None:
    allow = AllowList(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])
    assert allow.allows("10.1.2.3") and allow.allows("127.0.0.1") and allow.allows("2001:db8::5")
    assert not allow.allows("127.0.0.2") and not allow.allows("192.168.1.1") and not allow.allows("not-an-ip")
    assert AllowList([]).allows("203.0.113.9")  # empty: everybody
    with pytest.raises(ValueError, match=r"sip\.allow"):
        AllowList(["10.0.0.0/33"])


def test_rate_limiter_reject_then_drop_then_refill() -> None:
    clock = Clock()
    lim = RateLimiter(rate=10, burst=20, reply_budget=5, clock=clock)
    verdicts = [lim.check("1.2.3.4") for _ in range(40)]
    assert verdicts[:20] == ["ok"] * 20
    assert verdicts[20:25] == ["reject"] * 5  # answered 503 while within the reply budget
    assert set(verdicts[25:]) == {"drop"}  # a flood that ignores Retry-After: no replies at all
    assert lim.check("5.6.7.8") == "ok"  # other sources are not affected
    assert lim.retry_after() == 1
    clock.t += 1.0  # 10 tokens back
    assert [lim.check("1.2.3.4") for _ in range(10)] == ["ok"] * 10
    assert lim.stats == {"passed": 31, "rejected": 5, "dropped": 15}


@pytest.mark.parametrize("alg", ["SHA-256", "MD5"])
def test_ha1_records_authenticate_like_passwords_and_removal_drops_bindings(alg: str) -> None:
    from telephony.registrar import Ha1, ha1_of

    reg = Registrar({"anna": ha1_of("anna", "hotline", "s3cret-phone-pw")}, algorithms=(alg,))
    challenge = reg.handle(register(), ("127.0.0.1", 5090)).headers[0][1]
    wrong = reg.handle(register(auth=answer(challenge, "guess"), cseq=2), ("127.0.0.1", 5090))
    assert wrong.status == 401 and reg.stats["refused"] == 1
    ok = reg.handle(register(auth=answer(challenge, "s3cret-phone-pw", nc=2), cseq=3), ("127.0.0.1", 5090))
    assert ok.status == 200 and reg.lookup("anna") == "sip:anna@127.0.0.1:5090" and reg.authenticated_with == {alg: 1}
    reg.set_user("anna", Ha1("hotline", {"MD5" if alg == "SHA-256" else "SHA-256": "0" * 32}))  # no hash for alg
    again = reg.handle(register(auth=answer(challenge, "s3cret-phone-pw", nc=3), cseq=4), ("127.0.0.1", 5090))
    assert again.status == 401
    assert reg.remove_user("anna") and reg.lookup("anna") is None
