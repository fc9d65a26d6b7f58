import math

import pytest

from smoothcert.decisions.cohen import GaussianFacts, GaussianParams
from smoothcert.decisions.tokens import TokenDetails
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, Payload, StageEvidence

SELECTION = StageEvidence("selection", n=100, alpha=0.0, counts=(0, 0, 0, 100))
ESTIMATION = StageEvidence("estimation", n=1000, alpha=0.001, counts=(0, 10, 0, 990))
EVIDENCE = Evidence((SELECTION, ESTIMATION), GaussianFacts(num_classes=4), seed=0, seconds=0.1)

BASE = dict(
    method="cohen",
    claim="majority",
    prediction=3,
    abstained=False,
    radius=0.42,
    p_lower=0.8,
    alpha=0.001,
    seed=0,
    seconds=0.1,
    params=GaussianParams(sigma=0.25, n0=100, n=1000, alpha=0.001),
    evidence=EVIDENCE,
)


def test_json_round_trip_keeps_every_field():
    r = CertifyResult(**BASE, p_upper=0.1, radius_curve=(0.4, 0.2, 0.0))
    back = CertifyResult.from_json(r.to_json())
    assert back == r
    assert back.radius_curve == (0.4, 0.2, 0.0)
    assert isinstance(back.params, GaussianParams) and back.params.sigma == 0.25
    assert back.to_dict()["params"] == {
        "kind": "gaussian",
        "sigma": 0.25,
        "n0": 100,
        "n": 1000,
        "alpha": 0.001,
    }
    # the pre-evidence views derive from the stages
    assert back.counts_selection == (0, 0, 0, 100)
    assert back.counts_estimation == (0, 10, 0, 990)
    assert (back.n0, back.n) == (100, 1000)


def test_typed_details_round_trip_without_sentinels():
    details = TokenDetails(d_certified=None, p_lower_cp=0.8, flag_rate=0.9)
    r = CertifyResult(**BASE, details=details)
    back = CertifyResult.from_json(r.to_json())
    assert back == r and isinstance(back.details, TokenDetails)
    assert back.details.d_certified is None  # "nothing certified" is None, never -1
    assert r.to_dict()["details"]["kind"] == TokenDetails.kind
    assert issubclass(TokenDetails, Payload)


def test_abstention_is_an_explicit_flag():
    r = CertifyResult(**{**BASE, "prediction": None, "abstained": True, "radius": 0.0})
    assert r.prediction is None and r.abstained
    assert CertifyResult.from_json(r.to_json()) == r


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"prediction": None}, "abstained = False"),
        ({"abstained": True}, "abstained = True"),
        ({"prediction": True}, "prediction = True"),
        ({"radius": -1.0}, "radius = -1.0"),
        ({"radius": math.inf}, "radius = inf"),
        ({"p_lower": math.nan}, "p_lower = nan"),
        ({"p_lower": 1.5}, "p_lower = 1.5"),
        ({"alpha": 0.0}, "alpha = 0.0"),
        ({"radius_unit": "linf"}, "radius_unit = 'linf'"),
        ({"claim": "robust"}, "claim = 'robust'"),
        ({"method": ""}, "method = ''"),
    ],
)
def test_inconsistent_records_rejected(overrides, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        CertifyResult(**{**BASE, **overrides})
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n": -3}, "n = -3"),
        ({"counts": (1.7, 2)}, "count = 1.7"),
        ({"counts": (10, 989)}, "counts sum to 999 but n = 1000"),
        ({"role": "guess"}, "role = 'guess'"),
        ({"alpha": 1.0}, "alpha = 1.0"),
    ],
)
def test_inconsistent_stages_rejected(kwargs, fragment):
    stage = {"role": "estimation", "n": 1000, "alpha": 0.001, "counts": (10, 990), **kwargs}
    with pytest.raises(InvalidParameterError, match="valid") as info:
        StageEvidence(**stage)
    assert fragment in str(info.value)


def test_from_dict_names_missing_and_unknown_fields():
    data = CertifyResult(**BASE).to_dict()
    with pytest.raises(InvalidParameterError, match="unknown"):
        CertifyResult.from_dict({**data, "extra": 1})
    with pytest.raises(InvalidParameterError, match="'no_such_kind'"):
        CertifyResult.from_dict({**data, "params": {**data["params"], "kind": "no_such_kind"}})
    del data["alpha"]
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        CertifyResult.from_dict(data)
