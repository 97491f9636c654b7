"""A ViewCrafter-compatible video model that loads the official checkpoints (issue 21).

ViewCrafter (Drexubery/ViewCrafter, MIT) is DynamiCrafter's latent video UNet with the VAE latents
of point-cloud renders concatenated to the noisy latent, a CLIP image embedding of the reference
view through a resampler into cross-attention, v-prediction on a zero-terminal-SNR schedule and
CFG with guidance rescale. Everything here is written from reading the official code (commit
8408cd5a7ae66b7f6e8cdfda0b3d0c2996f8646d); parameter names match its checkpoints.

- :mod:`.unet`, :mod:`.resampler`, :mod:`.clip`, :mod:`.vae`: the networks;
- :mod:`.checkpoint`, :mod:`.load`: strict loading of ``ViewCrafter_16.ckpt`` / ``ViewCrafter_25.ckpt``;
- :mod:`.folder`: a model as a folder of ``save_pretrained`` parts (a distilled student);
- :mod:`.pipeline`: scheduler, DDIM, CFG, :class:`ViewCrafterPipeline`;
- :mod:`.generate`: :func:`viewcrafter_fill`, scene-size warps in, scene-size frames out.
"""

from .checkpoint import (
    CHECKPOINT_HINT,
    official_keys,
    read_checkpoint,
    split_checkpoint,
)
from .clip import CLIPTokenizer, OpenCLIPTextTower, OpenCLIPVisionTower, find_vocab
from .folder import is_viewcrafter_folder, load_viewcrafter_folder, read_viewcrafter_config, save_viewcrafter_folder
from .generate import viewcrafter_fill
from .load import (
    ViewCrafterConfig,
    build_networks,
    load_networks,
    load_viewcrafter,
    make_pipeline,
)
from .pipeline import (
    DEFAULT_PROMPT,
    VARIANTS,
    ViewCrafterConditions,
    ViewCrafterPipeline,
    ViewCrafterVariant,
    ddim_sample,
    ddim_step,
    dynamic_rescale_table,
    guided_v,
    make_scheduler,
)
from .resampler import ImageResampler
from .unet import ViewCrafterUNet
from .vae import make_vae

__all__ = [
    "CHECKPOINT_HINT",
    "DEFAULT_PROMPT",
    "VARIANTS",
    "CLIPTokenizer",
    "ImageResampler",
    "OpenCLIPTextTower",
    "OpenCLIPVisionTower",
    "ViewCrafterConditions",
    "ViewCrafterConfig",
    "ViewCrafterPipeline",
    "ViewCrafterUNet",
    "ViewCrafterVariant",
    "build_networks",
    "ddim_sample",
    "ddim_step",
    "dynamic_rescale_table",
    "find_vocab",
    "guided_v",
    "is_viewcrafter_folder",
    "load_networks",
    "load_viewcrafter",
    "load_viewcrafter_folder",
    "make_pipeline",
    "make_scheduler",
    "make_vae",
    "official_keys",
    "read_checkpoint",
    "read_viewcrafter_config",
    "save_viewcrafter_folder",
    "split_checkpoint",
    "viewcrafter_fill",
]
