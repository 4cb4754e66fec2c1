"""Synthetic Instagram-like users with a planted popularity signal (for tests; no real data).

Each user has a follower count drawn log-uniformly; each post a caption of filler words, maybe a few
*hot* words (emoji and hashtags among them) or *cold* words, an alt-text and a time. Likes are

    log(likes) = a * log(followers) + b * (n_hot - n_cold) + c * selfie + noise,

so popularity across users follows the follower count (fusion DNN, SMP) and, within a user, the
planted words and the ``selfie`` alt-text concept decide the top and bottom quarters (dual
attention). The generator writes the same JSON schema as ``UserData/<username>.json`` so that tests
go through the real reader (:func:`write_archive`).
"""

from __future__ import annotations

import io
import json
import pathlib
import tarfile

import numpy as np

HOT_WORDS = ("sunset", "#blessed", "🔥", "love", "#beach")
COLD_WORDS = ("coffee", "#monday", "breakfast", "meeting", "😐")
FILLER = tuple(f"w{i}" for i in range(60)) + ("the", "a", "and", "day", "with", "my", "@friend")
ALT_CONCEPTS = ("outdoor", "food", "text", "sky", "indoor", "closeup", "nature")


def generate_users(num_users: int = 60, posts_per_user: int = 12, *, seed: int = 0,
                   hot_effect: float = 1.0, follower_exponent: float = 0.9,
                   noise: float = 0.3) -> list[dict]:
  """User objects in the ``UserData/*.json`` schema with the planted signal above.

  Args:
    num_users: number of users.
    posts_per_user: posts per user (the real data has at most 12).
    seed: numpy seed.
    hot_effect: b, log-likes per planted hot word (minus per cold word).
    follower_exponent: a, the elasticity of likes in followers.
    noise: standard deviation of the log-likes noise.
  """
  rng = np.random.default_rng(seed)
  users = []
  t0 = 1_500_000_000
  for u in range(num_users):
    followers = int(np.exp(rng.uniform(np.log(1e3), np.log(1e7))))
    posts = []
    for p in range(posts_per_user):
      n_hot = int(rng.integers(0, 3))
      n_cold = int(rng.integers(0, 3)) if n_hot == 0 else 0
      words = list(rng.choice(FILLER, size=int(rng.integers(4, 12))))
      for _ in range(n_hot):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(HOT_WORDS)))
      for _ in range(n_cold):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(COLD_WORDS)))
      selfie = bool(rng.random() < 0.3)
      concepts = list(rng.choice(ALT_CONCEPTS, size=int(rng.integers(1, 3)), replace=False))
      if selfie:
        concepts = ["selfie"] + concepts
      people = int(rng.integers(0, 3))
      head = f"{people} people" if people > 1 else ("1 person" if people == 1 else None)
      parts = ([head] if head else []) + concepts
      alt = "Image may contain: " + (", ".join(parts[:-1]) + " and " + parts[-1]
                                     if len(parts) > 1 else parts[0])
      log_likes = (follower_exponent * np.log(followers) + hot_effect * (n_hot - n_cold)
                   + 0.5 * selfie + noise * rng.normal() - 1.0)
      likes = int(max(0, np.round(np.exp(log_likes))))
      posts.append({
          "__typename": "GraphSidecar" if rng.random() < 0.2 else "GraphImage",
          "id": f"{u}_{p}",
          "edge_media_to_caption": " ".join(words),
          "edge_liked_by": likes,
          "edge_media_to_comment": int(likes * 0.01 * rng.uniform(0.5, 1.5)),
          "taken_at_timestamp": int(t0 + u * 10_000 + p * 86_400 + rng.integers(0, 3600)),
          "is_video": False,
          "location": "Somewhere" if rng.random() < 0.3 else None,
          "accessibility_caption": alt,
      })
    users.append({
        "username": f"user{u:04d}",
        "edge_followed_by": followers,
        "edge_follow": int(rng.integers(10, 2000)),
        "edge_owner_to_timeline_media": int(rng.integers(posts_per_user, 3000)),
        "is_verified": bool(rng.random() < 0.5),
        "posts": posts,
    })
  return users


def write_archive(directory: str | pathlib.Path, users: list[dict],
                  extra_files: dict[str, bytes] | None = None) -> pathlib.Path:
  """Writes ``<directory>/UserData.tar.gz`` holding ``UserData/<username>.json`` per user.

  Args:
    directory: output folder (created).
    users: user objects (e.g. from :func:`generate_users`).
    extra_files: raw bytes of more members by file name under ``UserData/`` (bad-input tests).

  Returns:
    The folder, ready for ``load_instagram(directory)``.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with tarfile.open(directory / "UserData.tar.gz", "w:gz") as tar:
    files = {f"{u['username']}.json": json.dumps(u, ensure_ascii=False).encode("utf-8")
             for u in users}
    files.update(extra_files or {})
    for name, data in sorted(files.items()):
      info = tarfile.TarInfo(f"UserData/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return directory
