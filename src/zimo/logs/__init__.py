"""Logs that several areas share: the gateway's request log (:mod:`zimo.logs.requests`) is
written by ``zimo serve`` and read by ``zimo synth --mode distill``, the flywheel and the
dashboard, so it belongs to none of them."""
