"""Option chain from the latest ticks; history, quotes and positions passed through to the broker."""
import json
from datetime import datetime, timedelta

from app.core.redis_client import get_redis


def test_underlyings_and_chain_shape(client, headers, instruments):
    names = client.get("/option-chain/underlyings", headers=headers["primary"]).json["underlyings"]
    assert {"NIFTY", "BANKNIFTY"} <= set(names)

    chain = client.get("/option-chain?underlying=nifty", headers=headers["primary"]).json
    assert chain["underlying"] == "NIFTY" and chain["expiry"] == chain["expiries"][0]
    assert chain["spot"]["instrument_token"] == 256265
    assert chain["future"]["tradingsymbol"].endswith("FUT")
    assert len(chain["strikes"]) >= 20
    strikes = [row["strike"] for row in chain["strikes"]]
    assert strikes == sorted(strikes)
    assert all(row["CE"] and row["PE"] for row in chain["strikes"])


def test_chain_is_filled_from_latest_ticks(client, headers, instruments):
    chain = client.get("/option-chain?underlying=NIFTY", headers=headers["primary"]).json
    middle = chain["strikes"][len(chain["strikes"]) // 2]
    ce = middle["CE"]
    redis = get_redis()
    redis.hset("ticks:latest", mapping={
        "256265": json.dumps({"instrument_token": 256265, "last_price": middle["strike"] + 10}),
        str(ce["instrument_token"]): json.dumps({
            "instrument_token": ce["instrument_token"], "last_price": 123.45, "change": 1.5, "oi": 1000,
            "volume_traded": 5000, "greeks": {"iv": 0.14, "delta": 0.52, "gamma": 0.001, "theta": -12.0,
                                              "vega": 9.5, "rho": 3.1}}),
    })
    try:
        chain = client.get(f"/option-chain?underlying=NIFTY&expiry={chain['expiry']}", headers=headers["primary"]).json
        row = next(r for r in chain["strikes"] if r["strike"] == middle["strike"])
        assert row["CE"]["last_price"] == 123.45 and row["CE"]["iv"] == 0.14 and row["CE"]["volume"] == 5000
        assert chain["spot"]["last_price"] == middle["strike"] + 10
        assert chain["atm_strike"] == middle["strike"]
    finally:
        redis.delete("ticks:latest")


def test_chain_errors(client, headers, instruments):
    assert client.get("/option-chain?underlying=NOPE", headers=headers["primary"]).status_code == 404
    assert client.get("/option-chain?underlying=NIFTY&expiry=2001-01-01", headers=headers["primary"]).status_code == 404
    assert client.get("/option-chain?underlying=NIFTY&expiry=notadate", headers=headers["primary"]).status_code == 422
    assert client.get("/option-chain", headers=headers["primary"]).status_code == 422
    assert client.get("/option-chain?underlying=NIFTY").status_code == 401


def test_history_passthrough(client, headers, instruments):
    to = datetime.now().replace(microsecond=0)
    response = client.get(f"/history?instrument_token=256265&interval=5minute&oi=true"
                          f"&from_ts={(to - timedelta(days=2)).isoformat()}&to_ts={to.isoformat()}",
                          headers=headers["primary"])
    assert response.status_code == 200, response.json
    candles = response.json["candles"]
    assert candles and {"date", "open", "high", "low", "close", "volume"} <= set(candles[0])
    bad = client.get(f"/history?instrument_token=256265&interval=7minute&from_ts={to.isoformat()}&to_ts={to.isoformat()}",
                     headers=headers["primary"])
    assert bad.status_code == 422


def test_quote_and_positions_passthrough(client, headers, instruments):
    quote = client.get("/quote?i=NSE:NIFTY 50", headers=headers["primary"])
    assert quote.status_code == 200, quote.json
    assert quote.json["NSE:NIFTY 50"]["last_price"] > 0
    positions = client.get("/portfolio/positions?account_id=primary", headers=headers["primary"])
    assert positions.status_code == 200 and set(positions.json) == {"net", "day"}
    assert client.get("/portfolio/positions?account_id=other", headers=headers["primary"]).status_code == 403
