"""ILO's last stages: range extension to the pixels and self-tuning per image, without the truth.

Candidates (per image): every stage solution of ILO (CSGM's, then each round's best iterate),
each of them plus a sparse deviation (:func:`~ilo.solvers.deviation.deviate`) at every weight
of a log grid (one batch, one weight per row), each of them plus a classical method applied to
its residual observation ``y - A(stage)`` (:func:`~ilo.solvers.classical.on_residual`), the
classical methods alone (``C(y)``), and, for denoising, the noisy observation itself. For inpainting
(sparse random masks and boxes), super-resolution and compressed sensing (its isotropic
remainder) the generator's Gaussian prior
(:mod:`~ilo.solvers.gaussian`, where ``ilo`` passes it, :func:`wants_prior`) is the first of
these "classical" methods: its posterior mean alone and centred at each stage. Which
stages the choice may start from is ``SelectionConfig.stage`` (by default: any, next to a box;
the refit's best-fitting one for other held-out parts; none, i.e. the classical methods alone
or the observation, under SURE). The choice per image:

* **held-out measurements** (inpainting, super-resolution, compressed sensing): the observed
  entries are split into a fit and a validation part (:func:`split`; the split of image ``i``
  comes from the stream ``(seeds[i], "holdout")`` of :mod:`ilo.rng`), ILO runs on the fit part,
  every candidate is scored by its error on the validation part, and ILO's rounds are run again
  on all measurements (both runs as one batch of 2B rows, :func:`fit_and_refit`); the candidate
  of the chosen stage and weight is returned. By default (``SelectionConfig.csgm == "method"``)
  the CSGM stage is the CSGM method at its own preset and ILO's whole budget, run once on the
  fit part; both runs' rounds start from it and its solution is the ``"csgm"`` candidate
  (recorded as ``csgm_candidate``), which every stage rule lets the choice take; where it is
  chosen, CSGM continues from it on all measurements (``SelectionConfig.csgm_refit``, half of its
  steps, one restart; ``csgm_refit`` in the record says where that replaced it). The rounds
  double the generator rows; ``Result.history`` holds the CSGM stage's steps, then the refit's
  (the fit run's step count is recorded as ``fit_run_steps``), and ``Result.seconds`` is the
  wall time of the whole self-tuning, candidates included. The held-out part resembles what
  is missing: patches next to a box-shaped hole, random pixels for a random mask, random
  low-resolution pixels (all channels) for super-resolution, random measurements for
  compressed sensing (next to a box, ``SelectionConfig.ring`` holds out the whole ring of that
  width around it instead, :func:`ring`). The estimate is noisy where few entries are held out, so the choice
  counts its noise (``SelectionConfig.z``): the reference is the classical method alone with
  the lowest estimate (or the first, ``SelectionConfig.reference``; by default the first on
  images with fewer than ``SelectionConfig.sparse_units`` held-out units, :func:`first_reference`;
  next to a box the first of ``SelectionConfig.box_classical``, harmonic inpainting, with the
  margin ``SelectionConfig.box_z`` and no blends, ``box_blend``; or, ``reference="mean"``, a
  candidate of its own: the mean of the classical methods alone and ILO's own output,
  :func:`mean_candidate`), every candidate scores
  its estimate plus ``z`` standard errors of its paired difference to the reference over the
  held-out units (:func:`held_out_units`: pixels, measurements, or whole patches next to a
  box, whose pixels are correlated; :func:`paired_se`), and the lowest score is chosen (:func:`choose`); the record holds the
  ``reference``, ``estimated_se`` per candidate, ``units`` and ``z``. With
  ``SelectionConfig.blend`` (weights ``a``, by default 1/4, 1/2, 3/4) the choice
  also runs over convex blends ``a * first + (1 - a) * second`` of two candidates per image
  (``SelectionConfig.blend_pairs``; by default the best-scoring candidate other than the
  reference with the reference, and the two classical methods alone with the lowest
  estimates; :func:`blend_pairs`): each is scored on the held-out part like
  the others from the fit part's candidates (:func:`with_blends`) and built from the refit
  candidates (named ``"blend@<a>"``, ``"blend-<pair>@<a>"``; the record's ``blend`` says per
  image what each was made of). A blend replaces the choice among the other candidates only
  where its estimate plus ``z`` standard errors of their paired difference lies below that
  choice's estimate (:func:`challenge`; ``SelectionConfig.blend_against``). A chosen blend of
  the CSGM candidate refits that candidate first (:func:`made_of`). Under
  ``SelectionConfig.csgm == "challenge"`` (super-resolution) both runs keep ILO's own CSGM stage
  and the CSGM method, run once, challenges the final choice the same way (the candidate
  ``"csgm-method"``, margin ``csgm_z``, only on images with at least ``csgm_min_units``
  held-out units; not run where no image has them; ``csgm_challenger`` in the record). By
  default (``csgm_basin == "all"``) it runs on all measurements, so its solution is the CSGM
  method's own, and is scored by the held-out error of its continuation on the fit part
  (``csgm_probe`` of its steps, :func:`run_challenger`); where taken CSGM continues from it on
  all measurements (``csgm_continue``). Under ``"fit"`` it runs on the fit part and is refit on
  all measurements where taken (``csgm_refit``). Under ``"method"`` with
  ``SelectionConfig.method_challenger`` (the default; random inpainting, CS) the CSGM method also
  runs on all measurements, in one batch with the shared stage on the fit part (:func:`paired`,
  :func:`result_rows`), and challenges the choice as under ``"challenge"`` with ``csgm_basin ==
  "all"``, at its own margin ``method_challenger_z`` (on images with fewer than ``method_challenger_units`` held-out units only where its
  estimate is below the choice's over ``method_challenger_ratio``): the fit part's run can land
  in a worse basin than the CSGM method on all measurements.
* **SURE** (denoising with known sigma; Ramani, Blu & Unser 2008): the Monte-Carlo estimate
  of each candidate's MSE (:func:`~ilo.solvers.risk.sure`), the stage images held fixed (their
  own dependence on the noise is not differentiated, which makes their estimates optimistic).
  The observation scores exactly ``sigma²``, so the choice never has a higher estimated risk
  than the input. The CSGM stage (run on ``y``) is held fixed too, with the divergence of a fit
  of its latent dimension added (:func:`csgm_sure_correction`). Under the default stage rule
  (``"classical"``: the CSGM stage's own solution, the classical methods alone and the
  observation) with the CSGM method as the stage, ILO's rounds are not run and only those
  candidates are built and estimated (the same choice, bit for bit; ``rounds_run`` in the
  record; ``SelectionConfig.every_candidate`` computes them all).

For noiseless inpainting every candidate keeps the observed pixels (:func:`keep_observed`).

Where each part lives (every name is also importable from this package):

* :mod:`.heldout`: the split into fit and validation parts, :class:`HeldOut`, the held-out units,
  per-unit errors and paired standard errors;
* :mod:`.pool`: the candidates, their names and stages, the Gaussian prior's and the
  classical methods' part, the observed pixels kept;
* :mod:`.choice`: the margin's reference, the scores, the blends and their challenge;
* :mod:`.batches`: the fit part's and the whole problem as one batch, ILO's fit and refit;
* :mod:`.challenger`: the CSGM method's challenge and its continuation on all measurements;
* :mod:`.tuning`: :func:`self_tune` and its steps; its result carries the CSGM method's run on all
  measurements, where one was made, as ``Result.csgm_method`` (``ilo demo`` shows it as its CSGM row).
"""

from __future__ import annotations

from .heldout import HeldOut, is_box, split, ring, held_out_units, unit_errors, paired_se
from .pool import (Stage, paste_observed, extend, candidate_names, candidate_stages, classical_methods, wants_prior,
                   residual_candidates, candidates, row_candidates, mean_candidate)
from .choice import first_reference, choose, scores, blend_pairs, usable_pairs, blend_names, blend, with_blends, challenge, made_of
from .batches import copy_rows, fit_and_refit, paired, result_rows
from .challenger import refit_csgm, run_challenger, challenge_csgm
from .tuning import csgm_sure_correction, self_tune

__all__ = ["HeldOut", "is_box", "split", "ring", "held_out_units", "unit_errors", "paired_se", "Stage", "paste_observed",
           "extend", "candidate_names", "candidate_stages", "classical_methods", "wants_prior",
           "residual_candidates", "candidates", "row_candidates", "mean_candidate", "first_reference",
           "choose", "scores", "blend_pairs", "usable_pairs", "blend_names", "blend", "with_blends",
           "challenge", "made_of", "copy_rows", "fit_and_refit", "paired", "result_rows", "refit_csgm",
           "run_challenger", "challenge_csgm", "csgm_sure_correction", "self_tune"]
