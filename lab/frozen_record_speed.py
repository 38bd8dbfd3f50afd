"""A frozen dataclass beside the FrozenRecord that replaces it (appliance/frozen_record.py): CPU
ns per construction, hash, ==, dict look-up and attribute read, interleaved and the minimum of
ROUNDS (`time.process_time`, so other processes on a loaded machine count less).

    python -m lab.frozen_record_speed [ROUNDS]

Rows: the generic record (two compared fields, as most are), and StreamKey (openvpn/server_model.py,
hashed for every TCP packet: its own __eq__/__hash__) beside the dataclass it was (helper review49b)."""
from __future__ import annotations

import sys
import time
import timeit
from dataclasses import dataclass

from appliance.frozen_record import FrozenRecord
from appliance.openvpn.server_model import StreamKey


@dataclass(frozen=True)
class DataclassKey:
    conn: int
    ip: str


class RecordKey(FrozenRecord):
    conn: int
    ip: str


def _ops(cls: type) -> dict[str, object]:
    k, k2 = cls(12345, "198.18.0.7"), cls(12345, "198.18.0.7")
    d = {cls(i, "198.18.0.7"): i for i in range(12000, 13000)}
    return {"construct": lambda: cls(12345, "198.18.0.7"), "hash": lambda: hash(k), "==": lambda: k == k2,
            "dict[equal key]": lambda: d[k2], "attribute": lambda: k.conn}


def main(rounds: int = 15, number: int = 100_000) -> None:
    kinds = {"dataclass": _ops(DataclassKey), "FrozenRecord": _ops(RecordKey), "StreamKey": _ops(StreamKey)}
    best = {kind: dict.fromkeys(ops, float("inf")) for kind, ops in kinds.items()}
    for _ in range(rounds):
        for kind, ops in kinds.items():
            for name, f in ops.items():
                t = timeit.Timer(f, timer=time.process_time).timeit(number=number) / number * 1e9
                best[kind][name] = min(best[kind][name], t)
    print(f"{'CPU ns per op':18s}" + "".join(f"{k:>14s}" for k in kinds))
    for name in best["dataclass"]:
        print(f"{name:18s}" + "".join(f"{best[k][name]:14.0f}" for k in kinds))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
