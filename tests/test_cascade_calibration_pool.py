"""Which rows calibrate a served cascade: the flywheel's teacher rows train, they are not scored.

On real SMS rows with the classical tier's real recipe: the rows a calibrated cascade escalates
(the big tier's answers become teacher rows) are the hard tail of the traffic. Scored in the
calibration pool, they over-represent it, so the threshold
moves on evidence that is not the traffic's (on the Chinese SMS stream it rose round after round
and more was escalated); trained on in every fold but not scored, the pool stays a sample of
the traffic, and the cascade meets its target on traffic it has not seen."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import cross_val_predict

from project_fixtures import SMS
from zimo.classical.config import ClassicalTrainConfig
from zimo.classical.model import make_pipeline, normalise
from zimo.records import make_record
from zimo.route.cascade import calibrate_cascade, cascade_metrics, label_margin
from zimo.route.live import calibration_split, out_of_fold_proba

LAB = {"ham": 0, "spam": 1}
COSTS = [0.0, 1.0]
TARGET = 0.99


def _rows() -> tuple[list, list]:
    lines = [x.split("\t", 1) for x in SMS.read_text(encoding="utf-8").splitlines()[1:]]
    ham = [(lab, t) for lab, t in lines if lab == "ham"]
    spam = [(lab, t) for lab, t in lines if lab == "spam"]
    return ham, spam


def _xy(rows):
    return normalise([t for _, t in rows]), np.array([LAB[lab] for lab, _ in rows])


def _threshold(p_dev, y_dev, p_oof, y_oof) -> float:
    conf = np.concatenate([label_margin(p_dev), label_margin(p_oof)])[:, None]
    right = np.concatenate([p_dev.argmax(1) == y_dev, p_oof.argmax(1) == y_oof])
    q = np.column_stack([right.astype(float), np.ones(len(right))])
    cas = calibrate_cascade(conf, q, COSTS, ["classical", "big"], quality_target=TARGET)
    return cas.thresholds[0]


@pytest.mark.slow  # about a minute: five cross-validations of the real recipe
def test_escalated_rows_train_every_fold_and_the_pool_stays_a_sample_of_traffic():
    cfg = ClassicalTrainConfig(method="classical")
    ham, spam = _rows()
    dev = ham[:150] + spam[:40]
    train = ham[150:750] + spam[40:190]
    stream = ham[750:2250] + spam[190:400]
    fresh = ham[2250:] + spam[400:]
    x_dev, y_dev = _xy(dev)
    x_tr, y_tr = _xy(train)

    # Round 0: the cascade calibrated on dev + out-of-fold train, run on a stream; what it
    # escalates comes back from the big tier (gold here) as teacher rows.
    p_oof0 = out_of_fold_proba(cfg, x_tr, y_tr, [], np.array([], dtype=int))
    assert np.allclose(p_oof0, cross_val_predict(make_pipeline(cfg), x_tr, y_tr, cv=5,
                                                 method="predict_proba"))  # fmt: skip
    served0 = make_pipeline(cfg).fit(x_tr, y_tr)
    thr0 = _threshold(served0.predict_proba(x_dev), y_dev, p_oof0, y_tr)
    x_s, y_s = _xy(stream)
    esc = np.flatnonzero(label_margin(served0.predict_proba(x_s)) < thr0)
    assert 0.01 * len(stream) < len(esc) < 0.3 * len(stream)  # a tail, not the stream
    teacher = [stream[i] for i in esc]
    x_t, y_t = _xy(teacher)

    # The split after the flywheel round: human rows and the teacher rows, told apart by origin.
    recs = [make_record(t, source="sms", offset=i, label=lab) for i, (lab, t) in enumerate(train)]
    recs += [make_record(t, source="flywheel", offset=i, label=lab, origin="teacher")
             for i, (lab, t) in enumerate(teacher)]  # fmt: skip
    scored, train_only = calibration_split(recs)
    assert [r["text"] for r in scored] == [t for _, t in train]
    assert [r["text"] for r in train_only] == [t for _, t in teacher]

    served1 = make_pipeline(cfg).fit(x_tr + x_t, np.concatenate([y_tr, y_t]))
    p_dev1 = served1.predict_proba(x_dev)
    # Scored: the teacher rows' out-of-fold answers join the pool.
    p_all = cross_val_predict(make_pipeline(cfg), x_tr + x_t, np.concatenate([y_tr, y_t]), cv=5,
                              method="predict_proba")  # fmt: skip
    thr_scored = _threshold(p_dev1, y_dev, p_all, np.concatenate([y_tr, y_t]))
    # Trained on in every fold, not scored.
    p_new = out_of_fold_proba(cfg, x_tr, y_tr, x_t, y_t)
    assert p_new.shape == (len(train), 2)
    assert not np.allclose(p_new, p_oof0)  # the teacher rows did train the folds
    thr_new = _threshold(p_dev1, y_dev, p_new, y_tr)

    x_f, y_f = _xy(fresh)
    p_f = served1.predict_proba(x_f)
    right = np.column_stack([(p_f.argmax(1) == y_f).astype(float), np.ones(len(y_f))])

    def on_fresh(thr: float) -> dict:
        answered = np.where(label_margin(p_f) >= thr, 0, 1)
        return cascade_metrics(answered, right, np.tile(COSTS, (len(y_f), 1)))

    def pool_share(p_oof: np.ndarray, thr: float) -> float:  # escalated, as the pool sees it
        return float(np.mean(np.concatenate([label_margin(p_dev1), label_margin(p_oof)]) < thr))

    # Scored, the escalated rows make the pool overstate how much traffic the cheap tier is
    # unsure of (here about 3x); kept out of scoring, the pool sees what fresh traffic shows.
    scored_m, new_m = on_fresh(thr_scored), on_fresh(thr_new)
    assert pool_share(p_all, thr_scored) > 2 * scored_m["share"][1], (thr_scored, scored_m)
    ratio = pool_share(p_new, thr_new) / new_m["share"][1]
    assert 1 / 1.6 < ratio < 1.6, (thr_new, ratio, new_m)
    assert new_m["quality_vs_best_tier"] >= TARGET, (thr_new, new_m)
