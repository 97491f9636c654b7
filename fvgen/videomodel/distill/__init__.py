"""FVGen's distillation of the multi-step teacher into a 4-step student (issue 19).

- :mod:`.losses`: the non-saturating GAN losses, DMD's student gradient and the per-sample weight
  of the softened reverse KL, ``2 / (1 + r)`` (derived in that module's docstring).
- :mod:`.networks`: the student's 4-step chain with backward simulation, the frozen teacher's
  encoder features and the discriminator's 3D heads.
- :mod:`.teachers`: the teachers behind one adapter interface: our own (``fvgen train teacher``)
  and ViewCrafter (``viewcrafter:PATH``, issue 21).
- :mod:`.train`: ``train_distill`` (GAN stage, then DMD stage; ablations; resumable, DDP).

The saved student is a model folder of the teacher's kind: ours, which ``TeacherModel.from_pretrained``
and the teacher's sampler run with ``steps=4, cfg=1``; ViewCrafter's, a ViewCrafter model folder
that the ViewCrafter generator runs with 4 steps, guidance 1, eta 0 (its provenance says so under
``student``).
"""
