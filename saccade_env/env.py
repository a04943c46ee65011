"""SaccadeMNISTEnv: one environment, NumPy in and out; the batched core with a batch of one."""
from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from . import rng, spaces
from .core import EnvState, SaccadeCore, make_config, make_reset_options


class SaccadeMNISTEnv(gym.Env):
    """Find and read a handwritten digit hidden in a large noisy scene, through a foveated eye.

    ## Description
    A 28x28 MNIST digit is placed somewhere in a larger scene (by default 128x128, a
    MotionClouds texture, the digit at contrast 0.7 at a random eccentricity, a circular
    mask: the display of Daucé, Albiges & Perrinet 2020).  The agent never sees the scene:
    it sees a sharp fovea around its fixation and a coarse log-polar periphery.  It moves
    its eye with saccades, then answers which digit it is.  The eye starts at the centre.

    ## Action Space
    ``Dict({"saccade": Box(-1, 1, (2,), float32), "answer": Discrete(11)})``.
    ``answer`` 0..9 gives that class and ends the episode.  ``answer`` 10 means "look":
    the eye jumps to ``saccade``, an absolute target in scene coordinates (x right,
    y down, -1..1 spans the scene), snapped to the pixel grid.

    ## Observation Space
    A Dict of float32 Boxes, channel-first, with only the sensors asked for:

    | key | shape | content |
    |---|---|---|
    | fovea | (1, 28, 28) | the pixels around the fixation, in [0, 1] |
    | periphery | (12, 10, 24) | log-Gabor responses (orientation x phase, eccentricity, azimuth) around the fixation |
    | glimpse | (k, g, g) | RAM's multi-scale patches |
    | fixation | (2,) | where the eye is, scene coordinates |
    | saccades_left | (1,) | looks left before an answer is due |

    ## Rewards
    1 for a right answer, 0 for a wrong one, ``-saccade_cost`` (default 0) per look.

    ## Episode End
    Terminated when the agent answers (0..9).  Truncated, with reward 0, when it asks
    to look once more after ``max_saccades`` looks.  Stepping an ended episode without
    ``reset()`` is an error.

    ## Info
    At the end of an episode: ``label``, ``target_xy``, ``eccentricity`` (px),
    ``n_saccades``, ``correct``.  Never the label before.  With ``privileged=True``:
    ``scene`` (S, S) and ``target_xy`` at every step.

    ## Arguments
    - ``device``: torch device the core runs on (default "cpu").
    - ``render_mode``: None, "rgb_array" or "human".
    - ``data_dir``: an MNIST directory instead of the bundled copy.
    - any field of :class:`saccade_env.core.EnvConfig` (``sensors``, ``max_saccades``,
      ``split``, ``privileged``, ``fovea_size``, ``glimpse_size``, ``glimpse_scales``,
      ``saccade_cost``, ``scene``, ``periphery``) or of :class:`saccade_env.scene.SceneConfig`
      (``contrast``, ``noise``, ``size``, ``placement``, ``n_clutter``, ...).

    ``reset(options=...)`` may fix ``label`` (0..9), ``eccentricity`` (px, random angle)
    or ``target_xy`` (scene coordinates) of the next episode, or ``digit_index``: which
    digit of the split it shows (0..N-1; playing ``digit_index = 0..9999`` on
    ``split="test"`` scores each test digit once, as the papers do).

    ## Example
    ```python
    >>> import gymnasium as gym, numpy as np, saccade_env
    >>> env = gym.make("SaccadeMNIST-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(
    ...     {"saccade": np.array([0.3, -0.2], np.float32), "answer": 10})
    ```
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 4}

    read_ahead = 64  # most episodes drawn at once (see reset); 0 draws each episode alone

    def __init__(self, *, device: str | torch.device = "cpu", render_mode: str | None = None,
                 data_dir: str | os.PathLike | None = None, **config: Any) -> None:
        if render_mode not in (None, "rgb_array", "human"):
            raise ValueError(f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}")
        self.cfg = make_config(**config)
        self.core = SaccadeCore(self.cfg, device=device, data_dir=data_dir)
        self.render_mode = render_mode
        self.action_space = spaces.action_space()
        self.observation_space = spaces.observation_space(self.cfg, self.core.periphery_bound())
        self.state = None
        self._obs: dict[str, torch.Tensor] | None = None  # the last observation (render(); an episode's end repeats it)
        self._all = torch.ones(1, dtype=torch.bool, device=self.core.device)  # reset's mask
        self._answer: int | None = None
        self._viewer = None
        self._ahead: tuple[EnvState, dict[str, torch.Tensor]] | None = None  # upcoming episodes, drawn at once
        self._ahead_size = 1  # episodes the next read-ahead draws (doubles up to read_ahead)

    @torch.inference_mode()  # NumPy out: no tensor leaves, so none needs autograd's bookkeeping
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        opts = make_reset_options(options, 1, self.cfg.scene.size, self.core.device,
                                  n_digits=self.core.n_digits)
        seed = rng.check_seed(seed)
        super().reset(seed=seed)
        if seed is not None or self.state is None:
            key = rng.key_from_seed(seed, self.np_random)
            self.state = self.core.init_state(torch.tensor([key]))
            self._ahead, self._ahead_size = None, 1
        self._answer = None
        if opts or not self.read_ahead:
            # in place: the env owns its state's scene tensors and hands out only copies of them
            self.state = self.core.reset(self.state, self._all, inplace=True, **opts)
            obs = self._observe()
        else:
            obs = self._next_from_ahead()
        if self.render_mode == "human":
            self.render()
        return obs, self._info()

    @torch.inference_mode()
    def step(self, action: dict):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if self.state.done.item():
            raise RuntimeError("this episode has ended (terminated or truncated): call reset() before step()")
        saccade, answer = spaces.check_action(action, None, self.core.device)
        self.state, reward, terminated, truncated = self.core.step(self.state, saccade, answer)
        reward, terminated, truncated = reward.item(), terminated.item(), truncated.item()
        info = self._info()
        if terminated or truncated:
            ep = self.core.episode_info(self.state, answer)
            info.update(label=int(ep["label"][0]), target_xy=ep["target_xy"][0].cpu().numpy(),
                        eccentricity=float(ep["eccentricity"][0]), n_saccades=int(ep["n_saccades"][0]),
                        correct=bool(ep["correct"][0]))
            self._answer = answer.item() if terminated else None
            obs = self._numpy()  # the eye did not move: what it saw
        else:
            obs = self._observe()
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        if self.state is None:
            raise RuntimeError("call reset() before render()")
        from .render import HumanViewer, frame_of
        answer = self._answer if bool(self.state.done[0]) else None
        frame = frame_of(self.core, self.state, self._obs, 0, answer=answer)
        if self.render_mode == "rgb_array":
            return frame
        if self._viewer is None:
            self._viewer = HumanViewer(fps=self.metadata["render_fps"])
        self._viewer.show(frame)
        return None

    def close(self):
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    def _next_from_ahead(self) -> dict[str, np.ndarray]:
        """Start the next episode from a batch of upcoming ones drawn at once.

        An episode depends only on the env's stream key and its episode number
        (:func:`saccade_env.rng.uniforms`), so episodes ``e, e+1, ...`` drawn together by
        the batched core are those drawn one at a time (the same scenes, bit for bit; their
        first periphery readings come from the batched read, equal to the one-eye read to
        float rounding, ~1e-7, as in the vector env).  A batch amortises the per-operation
        cost of the draw: about 1 ms for one episode on a CPU core, a few tenths of that
        each in a batch.  The batch size doubles from 1 after each new seed (which drops
        the batch) up to :attr:`read_ahead`, so an env reseeded at every episode draws
        nothing it will not use.  Episodes started with reset options are drawn alone and
        leave the batch as it is.
        """
        ep = int(self.state.episode[0]) + 1
        old = self._ahead[0] if self._ahead is not None else None
        if old is None or not 0 <= ep - int(old.episode[0]) < old.episode.shape[0]:
            n = self._ahead_size
            self._ahead_size = min(2 * n, self.read_ahead)
            if old is not None and old.episode.shape[0] == n:
                batch = old  # drawn into again: its episodes are all played, nothing handed out aliases it
            else:
                batch = self.core.init_state(self.state.key.expand(n))
            batch.episode = torch.arange(ep - 1, ep - 1 + n, device=self.core.device)  # reset adds one
            batch = self.core.reset(batch, torch.ones(n, dtype=torch.bool, device=self.core.device), inplace=True)
            self._ahead = (batch, self.core.observe(batch))
        batch, obs = self._ahead
        j = ep - int(batch.episode[0])
        self.state = EnvState(**{f: None if t is None else t[j:j + 1] for f, t in batch.__dict__.items()})
        self._obs = {k: v[j:j + 1] for k, v in obs.items()}
        return self._numpy()

    def _observe(self) -> dict[str, np.ndarray]:
        self._obs = self.core.observe(self.state)
        return self._numpy()

    def _numpy(self) -> dict[str, np.ndarray]:
        """The last observation in NumPy arrays of the caller's own."""
        return {k: v.cpu().numpy()[0].copy() for k, v in self._obs.items()}

    def _info(self) -> dict[str, Any]:
        if not self.cfg.privileged:
            return {}
        return {"scene": self.state.scene[0].cpu().numpy().copy(),
                "target_xy": self.core.target_xy(self.state)[0].cpu().numpy()}
