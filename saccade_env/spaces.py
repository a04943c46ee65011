"""The spaces of SaccadeMNIST, and the checks every action goes through before it changes anything."""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from .core import LOOK, EnvConfig


def action_space() -> spaces.Dict:
    """``{"saccade": Box(-1, 1, (2,)), "answer": Discrete(11)}``."""
    return spaces.Dict({"saccade": spaces.Box(-1.0, 1.0, (2,), np.float32), "answer": spaces.Discrete(LOOK + 1)})


def observation_space(cfg: EnvConfig, periphery_bound: float) -> spaces.Dict:
    """A Dict of channel-first float32 Boxes with finite bounds, one per sensor in ``cfg.sensors``
    plus ``fixation`` (2,) and ``saccades_left`` (1,)."""
    d = {}
    if "fovea" in cfg.sensors:
        d["fovea"] = spaces.Box(0.0, 1.0, (1, cfg.fovea_size, cfg.fovea_size), np.float32)
    if "periphery" in cfg.sensors:
        b = float(np.float32(periphery_bound) * np.float32(1.001))
        d["periphery"] = spaces.Box(-b, b, cfg.periphery.shape, np.float32)
    if "glimpse" in cfg.sensors:
        d["glimpse"] = spaces.Box(0.0, 1.0, (cfg.glimpse_scales, cfg.glimpse_size, cfg.glimpse_size), np.float32)
    d["fixation"] = spaces.Box(-1.0, 1.0, (2,), np.float32)
    d["saccades_left"] = spaces.Box(0.0, float(max(cfg.max_saccades, 1)), (1,), np.float32)  # never a 0-width box
    return spaces.Dict(d)


_HOW = ('an action is {"saccade": float32 array of shape %s in [-1, 1] (x right, y down), '
        '"answer": int in 0..10 of shape %s (10 = look)}')


def check_action(action, batch: int | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an action and return it as tensors on ``device``: saccade (B, 2) float32, answer (B,) int64.

    Args:
        action: a dict with "saccade" and "answer" (NumPy arrays, tensors, or Python numbers).
        batch: the number of environments, or None for a single environment (no batch axis).

    Raises:
        ValueError / TypeError with what was wrong and the expected form; nothing is changed.
    """
    shape_s, shape_a = ((2,), ()) if batch is None else ((batch, 2), (batch,))
    how = _HOW % (shape_s, shape_a)
    if not isinstance(action, dict) or set(action) != {"saccade", "answer"}:
        got = sorted(action) if isinstance(action, dict) else type(action).__name__
        raise TypeError(f"bad action {got!r}: {how}")
    sac, ans = action["saccade"], action["answer"]
    if torch.is_tensor(sac) or torch.is_tensor(ans):
        sac, ans = torch.as_tensor(sac), torch.as_tensor(ans)
    else:
        try:
            sac, ans = np.asarray(sac), np.asarray(ans)
        except (TypeError, ValueError) as err:
            raise TypeError(f"bad action ({err}): {how}") from None
    if tuple(sac.shape) != shape_s:
        raise ValueError(f"action['saccade'] has shape {tuple(sac.shape)}, expected {shape_s}: {how}")
    if tuple(ans.shape) != shape_a:
        raise ValueError(f"action['answer'] has shape {tuple(ans.shape)}, expected {shape_a}: {how}")
    if isinstance(sac, np.ndarray):
        if sac.dtype.kind != "f":
            raise TypeError(f"action['saccade'] has dtype {sac.dtype}, expected a float: {how}")
        if ans.dtype.kind not in "iu":
            raise TypeError(f"action['answer'] has dtype {ans.dtype}, expected an integer: {how}")
        if batch is None:  # one action: two numbers, cheaper checked in plain Python than by NumPy
            xy, a = sac.tolist(), int(ans)
            finite = all(math.isfinite(v) for v in xy)
            _check_ranges(finite, max(map(abs, xy)) if finite else 0.0, a, a, xy, a, how)
            # clamping before the rounding to float32 gives what rounding then clamping gives
            return (torch.tensor([[min(max(v, -1.0), 1.0) for v in xy]], dtype=torch.float32, device=device),
                    torch.tensor([a], dtype=torch.int64, device=device))
        finite = bool(np.isfinite(sac).all())
        sac_max, ans_min, ans_max = (float(np.abs(sac).max()) if finite else 0.0), int(ans.min()), int(ans.max())
        sac, ans = torch.from_numpy(sac.astype(np.float32)), torch.from_numpy(ans.astype(np.int64))
    else:
        if not sac.dtype.is_floating_point:
            raise TypeError(f"action['saccade'] has dtype {sac.dtype}, expected a float: {how}")
        if ans.dtype.is_floating_point or ans.dtype == torch.bool or ans.is_complex():
            raise TypeError(f"action['answer'] has dtype {ans.dtype}, expected an integer: {how}")
        finite = bool(torch.isfinite(sac).all())
        sac_max = float(sac.abs().max()) if finite else 0.0
        ans_min, ans_max = int(ans.min()), int(ans.max())
    _check_ranges(finite, sac_max, ans_min, ans_max, sac.tolist() if not finite or sac_max > 1.0 + 1e-6 else None,
                  ans.tolist() if ans_min < 0 or ans_max > LOOK else None, how)
    sac = sac.to(device, torch.float32).clamp(-1.0, 1.0).reshape(-1, 2)
    return sac, ans.to(device, torch.int64).reshape(-1)


def _check_ranges(finite: bool, sac_max: float, ans_min: int, ans_max: int, sac_values, ans_values, how: str) -> None:
    """Raise the error that says what is wrong with an action's values (their lists only for the message)."""
    if not finite:
        raise ValueError(f"action['saccade'] contains NaN or inf ({sac_values}): {how}")
    if sac_max > 1.0 + 1e-6:
        raise ValueError(f"action['saccade'] is outside [-1, 1] ({sac_values}); clip it "
                         f"(np.clip(s, -1, 1)) or rescale your policy's output: {how}")
    if ans_min < 0 or ans_max > LOOK:
        raise ValueError(f"action['answer'] must be in 0..10 (0-9: the class, 10: look), got {ans_values}")
