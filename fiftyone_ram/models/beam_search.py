"""Beam search with the semantics of transformers' (4.4x) ``generate(num_beams=...)`` for a decoder-only LM.

Written here because ``generate`` needs a transformers ``PreTrainedModel`` with its cache API, which changes
between releases (upstream's captioner broke on transformers >= 4.50, issue #218); the few rules that
decide the output (top 2·beams candidates, end-of-sentence only from the top beams, scores normalised by
the generated length, early stop when no open beam can beat the finished ones) are kept exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class _Finished:
    num_beams: int
    length_penalty: float
    beams: list[tuple[float, torch.Tensor]] = field(default_factory=list)
    worst: float = 1e9

    def add(self, ids: torch.Tensor, sum_logprobs: float, generated: int) -> None:
        score = sum_logprobs / (generated ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst:
            self.beams.append((score, ids))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst = ranked[1][0]
            else:
                self.worst = min(score, self.worst)

    def done(self, best_sum_logprobs: float, generated: int) -> bool:
        if len(self.beams) < self.num_beams:
            return False
        return self.worst >= best_sum_logprobs / (generated ** self.length_penalty)

    def best(self) -> torch.Tensor:
        return sorted(self.beams, key=lambda b: b[0])[-1][1]  # on equal scores the later one, as transformers


def beam_search(next_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], prompt: torch.Tensor,
                beam_index: torch.Tensor, *, num_beams: int, max_length: int, min_length: int, eos_id: int,
                repetition_penalty: float = 1.0, length_penalty: float = 1.0) -> list[torch.Tensor]:
    """Best sequence per input (prompt included).

    ``next_logits(ids, rows)`` gives the logits of the next token for the sequences ``ids`` whose inputs are
    ``rows`` (indices into the caller's per-input state); ``prompt`` is (B, P); ``beam_index`` maps each of
    the B·beams rows to its input.
    """
    batch, prompt_len = prompt.shape
    ids = prompt.repeat_interleave(num_beams, dim=0)
    rows = beam_index
    scores = torch.zeros(batch, num_beams, device=prompt.device)
    scores[:, 1:] = -1e9  # all beams start identical: only the first may spawn candidates
    scores = scores.view(-1)
    finished = [_Finished(num_beams, length_penalty) for _ in range(batch)]
    done = [False] * batch
    while True:
        cur_len = ids.shape[1]
        logprobs = torch.log_softmax(next_logits(ids, rows).float(), dim=-1)
        if repetition_penalty != 1.0:
            seen = torch.gather(logprobs, 1, ids)
            seen = torch.where(seen < 0, seen * repetition_penalty, seen / repetition_penalty)
            logprobs = logprobs.scatter(1, ids, seen)
        if cur_len < min_length:
            logprobs[:, eos_id] = -float("inf")
        vocab = logprobs.shape[-1]
        candidates = (logprobs + scores[:, None]).view(batch, num_beams * vocab)
        top_scores, top = torch.topk(candidates, 2 * num_beams, dim=1, largest=True, sorted=True)
        next_scores = torch.zeros(batch, num_beams, device=ids.device)
        next_tokens = torch.zeros(batch, num_beams, dtype=torch.long, device=ids.device)
        next_rows = torch.zeros(batch, num_beams, dtype=torch.long, device=ids.device)
        for b in range(batch):
            if done[b]:
                next_rows[b] = b * num_beams  # keep padding a finished input along
                continue
            filled = 0
            for rank, (score, flat) in enumerate(zip(top_scores[b].tolist(), top[b].tolist())):
                row, token = b * num_beams + flat // vocab, flat % vocab
                if token == eos_id:
                    if rank < num_beams:
                        finished[b].add(ids[row].clone(), score, cur_len - prompt_len)
                else:
                    next_scores[b, filled], next_tokens[b, filled], next_rows[b, filled] = score, token, row
                    filled += 1
                if filled == num_beams:
                    break
            done[b] = done[b] or finished[b].done(top_scores[b].max().item(), cur_len - prompt_len)
        scores = next_scores.view(-1)
        order = next_rows.view(-1)
        ids = torch.cat([ids[order], next_tokens.view(-1, 1)], dim=1)
        rows = rows[order]
        if all(done) or ids.shape[1] >= max_length:
            break
    results = []
    for b in range(batch):
        if not done[b]:
            for beam in range(num_beams):
                row = b * num_beams + beam
                finished[b].add(ids[row], scores[row].item(), ids.shape[1] - prompt_len)
        results.append(finished[b].best())
    return results
