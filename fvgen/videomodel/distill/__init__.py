"""FVGen's distillation of the multi-step teacher into a 4-step student (issue 19).

- :mod:`.losses`: the non-saturating GAN losses, DMD's student gradient and the per-sample weight
  of the softened reverse KL, ``2 / (1 + r)`` (derived in that module's docstring).
- :mod:`.networks`: the student's 4-step chain with backward simulation, the frozen teacher's
  encoder features and the discriminator's 3D heads.
- :mod:`.train`: ``train_distill`` (GAN stage, then DMD stage; ablations; resumable, DDP).

The saved student is a teacher-format model folder: ``TeacherModel.from_pretrained`` and the teacher's
sampler run it with ``steps=4, cfg=1`` (its config's provenance says so under ``student``).
"""
