"""The paper's experiments on real data (chapter ``07_real_data``): images cut into patch tokens, a
text pipeline, small ViT-style models, minibatch Adam.

Li et al. (2025) validate their theory on CIFAR-10 and CIFAR-100 "modified" by replacing image
patches with noise, and on text classification, with small Vision-Transformer experts against a
multi-head transformer and an attention-free MoE.  Their architectures, noise model and
hyperparameters are not public; everything below is this companion's own instantiation:

* **Tokens.** An image (H x W x C, scaled to [0, 1]) is cut into non-overlapping ``patch`` x ``patch``
  patches; each flattened patch is a token in R^p, p = patch^2 C.  A text is lower-cased and split
  into words; a vocabulary is built from the training split only; ids are padded/truncated to
  ``seq_len`` and mapped to a *fixed* random embedding in R^``text_dim`` (a seeded Gaussian table,
  not trained: the experts' own linear token embeddings learn on top of it).
* **Noise.** In each image a share ``noise_share`` of the patches (chosen at random, seeded by
  ``data_seed``) is replaced by Gaussian noise whose pixels have the training images' per-pixel mean
  and standard deviation (``noise_share=0`` is the unmodified data set).  For text the same is done
  to the token vectors of the real (non-pad) tokens.
* **MoT.** M experts, each a one-layer ViT: token embedding ``E`` (p x D), positions, one
  multi-head self-attention layer (``Wq, Wk, Wv, Wo``), a GELU MLP (D -> mlp_ratio D -> D), both with
  residual connections and parameter-free pre-LayerNorm, mean pooling over tokens and a linear head to
  class logits.  A linear gate ``Theta`` (p x M) scores the *mean token* of a sample,
  ``h = Theta^T mean_l x_l``; training routes to ``argmax_m (h_m + r_m)`` with ``r_m ~ U[0, lam]``,
  evaluation to ``argmax_m h_m``; the output is ``pi_m(X) f_m(X)`` with ``pi = softmax(h)`` so that
  the gate gets a gradient (as in the synthetic engine).  ``Wq, Wk`` start small (std ``sigma_qk``),
  so at initialisation attention is nearly uniform, the analogue of the theory's ``W_KQ`` near 0.
* **Three stages** (epochs): Stage I (epoch <= T1) trains everything but the attention layer,
  Stage II (T1 < epoch <= T2) only the attention layer, Stage III the non-attention part again; the
  gate is trained throughout.  ``joint`` trains everything from the start (the control).
* **Baselines.** A single one-layer ViT with ``heads_single`` heads, and an attention-free MoE (the
  MoT's experts without their attention layer: per-token MLP, then mean pooling; pooling first would
  throw away where each patch sits).  Both are widened until their parameter count is as close as
  possible to the MoT's total (all experts plus gate).
* **Training.** Cross-entropy, minibatch Adam (``lr`` for experts and baselines, ``lr_gate`` for the
  gate), float64 on a CPU and float32 on a GPU (``training.compute_dtype``).  Seeds are the leading tensor
  dimension: the loss is summed over seeds, and Adam is elementwise, so seeds never mix.  Experts are a tensor dimension too: samples are grouped by routed
  expert into padded buckets and one einsum runs all experts of all seeds at once
  (``mot_forward_loop`` is the per-expert Python loop it is tested and timed against).

Seeds vary the initialisation, the minibatch order and the exploration noise; the data set (split
and noise pattern) is fixed by ``data_seed``, as the paper's modified CIFAR is one data set.
"""
from .loaders import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
