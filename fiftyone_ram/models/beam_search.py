"""Caption search with the rules of transformers 4.40's ``generate`` (the release upstream's captions come from).

Hand-written rather than ``BertLMHeadModel.generate``: that path is not stable across the transformers
releases we support. Upstream's own decoder lost ``generate`` with transformers >= 4.50 (issue #218); on 4.40
transformers' ``BertLMHeadModel`` drops ``encoder_hidden_states`` between steps; on 5.24 it fails unless the
caller builds an ``EncoderDecoderCache`` (the argument was renamed ``cache``), and its rewritten beam search
stops at other points than 4.40's once a caption can end before ``max_length``. The rules that decide the
output are few and kept here exactly:

- one beam is greedy search: the repetition penalty acts on the raw logits, the first [SEP] ends the caption;
- more beams: the penalty acts on log-probabilities; the top 2·beams candidates are ranked, an end-of-sentence
  candidate only finishes a caption from the top ``beams`` ranks; a finished caption's score is its summed
  log-probability over its generated length (the [SEP] counted) to the power ``length_penalty``; an input is
  done once no open beam can beat its worst finished caption; at ``max_length`` the open beams compete too.

Finished captions keep their closing [SEP], as ``generate`` returns them.

The model is called through ``step(ids, parents)``: the logits of the next token after each row of ``ids``,
where ``parents`` (None: the rows are as in the previous call, or this is the first call) gives for each row
the row of the previous call it continues, so that a cached decoder can reorder its keys and values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Step = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def beam_search(step: Step, prompt: torch.Tensor, *, num_beams: int, max_length: int, min_length: int,
                eos_id: int, repetition_penalty: float = 1.0, length_penalty: float = 1.0) -> list[torch.Tensor]:
    """The best sequence per row of ``prompt`` (B, P), prompt included; rows of ``step`` are input-major
    (input b owns rows b·beams ... b·beams + beams - 1)."""
    if num_beams == 1:
        return _greedy(step, prompt, max_length=max_length, min_length=min_length, eos_id=eos_id,
                       repetition_penalty=repetition_penalty)
    return _beams(step, prompt, num_beams=num_beams, max_length=max_length, min_length=min_length,
                  eos_id=eos_id, repetition_penalty=repetition_penalty, length_penalty=length_penalty)


def _penalize(scores: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty: every token already in a row gets less likely."""
    if penalty == 1.0:
        return scores
    seen = torch.gather(scores, 1, ids)
    return scores.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))


def _greedy(step: Step, prompt: torch.Tensor, *, max_length: int, min_length: int, eos_id: int,
            repetition_penalty: float) -> list[torch.Tensor]:
    ids = prompt
    open_rows = torch.ones(len(ids), dtype=torch.bool, device=ids.device)
    while True:
        scores = _penalize(step(ids, None).float(), ids, repetition_penalty)
        if ids.shape[1] < min_length:
            scores[:, eos_id] = -float("inf")
        tokens = torch.where(open_rows, scores.argmax(dim=-1), eos_id)  # closed rows only pad along
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        open_rows &= tokens != eos_id
        if not open_rows.any() or ids.shape[1] >= max_length:
            break
    results = []
    for row in ids:
        ends = (row[prompt.shape[1]:] == eos_id).nonzero()
        results.append(row if len(ends) == 0 else row[:prompt.shape[1] + int(ends[0]) + 1])
    return results


@dataclass
class _Finished:
    """The best ``num_beams`` finished captions of one input (transformers' ``BeamHypotheses``)."""

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


def _beams(step: Step, prompt: torch.Tensor, *, num_beams: int, max_length: int, min_length: int, eos_id: int,
           repetition_penalty: float, length_penalty: float) -> list[torch.Tensor]:
    batch, prompt_len = prompt.shape
    device = prompt.device
    ids = prompt.repeat_interleave(num_beams, dim=0)
    scores = torch.zeros(batch, num_beams, device=device)
    scores[:, 1:] = -1e9  # all beams start identical: only the first may spawn candidates
    scores = scores.view(-1)
    finished = [_Finished(num_beams, length_penalty) for _ in range(batch)]
    done = [False] * batch
    eos = torch.tensor([eos_id], device=device)
    parents = None
    while True:
        generated = ids.shape[1] + 1 - prompt_len  # the candidate token counts
        logprobs = _penalize(torch.log_softmax(step(ids, parents).float(), dim=-1), ids, repetition_penalty)
        if ids.shape[1] < min_length:
            logprobs[:, eos_id] = -float("inf")
        vocab = logprobs.shape[-1]
        candidates = (logprobs + scores[:, None]).view(batch, num_beams * vocab)
        top_scores, top = torch.topk(candidates, 2 * num_beams, dim=1, largest=True, sorted=True)
        next_scores = torch.zeros(batch, num_beams, device=device)
        next_tokens = torch.zeros(batch, num_beams, dtype=torch.long, device=device)
        next_rows = torch.zeros(batch, num_beams, dtype=torch.long, device=device)
        for b in range(batch):
            if done[b]:
                next_rows[b] = b * num_beams  # a finished input's rows only pad along
                continue
            filled = 0
            for rank, (score, flat) in enumerate(zip(top_scores[b].tolist(), top[b].tolist())):
                row, token = b * num_beams + flat // vocab, flat % vocab
                if token == eos_id:
                    if rank < num_beams:
                        finished[b].add(torch.cat([ids[row], eos]), score, generated)
                else:
                    next_scores[b, filled], next_tokens[b, filled], next_rows[b, filled] = score, token, row
                    filled += 1
                if filled == num_beams:
                    break
            done[b] = done[b] or finished[b].done(top_scores[b].max().item(), generated)
        scores = next_scores.view(-1)
        parents = next_rows.view(-1)
        ids = torch.cat([ids[parents], next_tokens.view(-1, 1)], dim=1)
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
