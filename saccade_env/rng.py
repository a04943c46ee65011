"""Counter-based random numbers, one independent stream per environment.

The vector environment must produce, for environment ``i`` seeded with ``seed + i``,
exactly the episodes a single environment seeded with ``seed + i`` produces, while
drawing the randomness of a whole batch in a few tensor operations on any device.
A shared ``torch.Generator`` cannot do that (its stream depends on the batch size),
so every environment carries an integer key and an episode counter, and the random
numbers of an episode are a hash of ``(key, episode, draw index)``.  The hash is a
32-bit integer mixer (the "lowbias32" finaliser) evaluated in int64 tensors, which
behaves identically on CPU and CUDA.  Nothing here touches NumPy's or torch's
global random state.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mixer on int64 tensors holding values in [0, 2**32)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def _mix32_int(x: int) -> int:
    """:func:`_mix32` on one Python int (int64 arithmetic wraps, but never in the low 32 bits kept)."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


@functools.lru_cache(maxsize=16)
def _columns(n: int) -> tuple[int, ...]:
    return tuple(_mix32_int(i * 0x85EBCA6B + 0x27D4EB2F) for i in range(n))


def check_seed(seed):
    """``seed`` as reset() takes it: None, or an int >= 0 (NumPy integers included) as a Python int;
    anything else is a TypeError or ValueError that says so."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be None or an int >= 0, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return int(seed)


def key_from_seed(seed: int | None, np_random: np.random.Generator | None = None) -> int:
    """The 32-bit stream key of an environment: from its integer seed, or drawn from
    ``np_random`` (seeded from the OS by Gymnasium) when the seed is None."""
    if seed is None:
        if np_random is None:
            np_random = np.random.default_rng()
        return int(np_random.integers(0, 2**32))
    seq = np.random.SeedSequence(int(seed))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


def uniforms(keys: torch.Tensor, episodes: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform floats in [0, 1) for each environment's current episode.

    Args:
        keys: (B,) int64, each environment's stream key.
        episodes: (B,) int64, each environment's episode counter.
        n: how many numbers to draw per environment.

    Returns:
        (B, n) float32, a deterministic function of (key, episode, column).
    """
    if keys.shape[0] == 1 and keys.device.type == "cpu":  # one stream: the same integers in plain Python
        k, e = keys.item(), episodes.item()
        base = _mix32_int(_mix32_int(k) ^ _mix32_int(e * 0x9E3779B9 + 0x632BE5AB))
        h = [_mix32_int(base ^ c) for c in _columns(n)]
        return torch.tensor([[(v >> 8) * (1.0 / (1 << 24)) for v in h]], dtype=torch.float32)
    base = _mix32(_mix32(keys) ^ _mix32(episodes * 0x9E3779B9 + 0x632BE5AB))  # (B,)
    idx = torch.arange(n, device=keys.device, dtype=torch.int64)
    h = _mix32(base[:, None] ^ _mix32(idx * 0x85EBCA6B + 0x27D4EB2F)[None, :])  # (B, n)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))
