"""The point-cloud-conditioned video diffusion teacher (issue 3; FVGen arXiv 2508.06392,
ViewCrafter-style): warped point-cloud renders with holes + their validity masks + one reference
input view -> a photo-real clip along the same cameras.

- :mod:`.configs`: model presets (``tiny`` for tests, ``embedded`` to ship, ``paper`` for external
  weights) and training configs.
- :mod:`.model`: :class:`TeacherModel` (our AutoencoderKL, a diffusers
  ``UNetSpatioTemporalConditionModel`` denoiser, a reference-view token encoder), a diffusers
  ``ConfigMixin`` container saved as a folder (``fvgen_model.json`` + one safetensors sub-folder
  per network) by ``save_pretrained`` and read by ``from_pretrained``.
- :mod:`.vae`: the latent autoencoder and its loss.
- :mod:`.sample`: v-prediction, zero-terminal-SNR DDIM sampling with trailing timesteps and CFG.
- :mod:`.graphed`: the same sampler captured as one CUDA graph per input shape and replayed (issue 19).
- :mod:`.data`: training examples through the same priors -> warp code path as inference, the
  evaluation-scene guard, example shards; single-photo warp-back examples (:mod:`.data.warpback`).
- :mod:`.adapt`: test-time adaptation to the input views (leave-one-out pairs, LoRA or full
  fine-tune); not yet wired into ``fvgen generate``.
- :mod:`.train`: ``train_teacher`` (bf16 autocast, EMA, clipping, DDP, resumable chunks).
- :mod:`.distill`: ``train_distill``, the teacher distilled into a 4-step student (GAN stage, then
  DMD with FVGen's softened reverse KL; issue 19).
- :mod:`.baseline`: classical biharmonic hole filling and the hole/all-pixel metrics.
- :mod:`.viewcrafter`: a ViewCrafter-compatible model that loads the official checkpoints (issue 21).

The distilled student ships (``weights/student``, ``--generator student``); the teacher does not, and
:func:`.model.resolve_model` refuses untrained weights instead of sampling noise.
"""
