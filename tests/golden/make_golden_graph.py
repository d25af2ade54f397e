#!/usr/bin/env python3
"""Golden fixtures for treevis on GRAPH networks (residual adds, BatchNorm, ReLU6):
an independent PyTorch (autograd) + Captum reference. Companion of make_golden.py (chains).

What it writes (tests/golden/, for NAME in resnet18, mobilenet_v2, squeezenet1_1, googlenet,
densenet121;
foreign: NAME.pth, NAME.onnx, NAME.ref.* only, see below)
------------------------------------------------------------------
  NAME.pth                 torch.save(model.state_dict()) of a REAL torchvision module tree
                           (torchvision.models.resnet.ResNet / mobilenet.MobileNetV2, module
                           names exactly torchvision's) at REDUCED width, seeded random conv /
                           linear weights AND random BatchNorm parameters (eval mode):
                           weight ~ U(0.5,1.5), bias ~ N(0,0.1), running_mean ~ N(0,0.1),
                           running_var ~ U(0.5,2.0); num_batches_tracked (int64) kept.
  NAME.onnx                TorchScript exporter: torch.onnx.export(..., dynamo=False,
                           opset_version=17, do_constant_folding=True,
                           input_names=["input"], output_names=["logits"])
  NAME_dynamo.onnx (+ NAME_dynamo.onnx.data)
                           the dynamo exporter (torch.onnx.export(model, (x,), dynamo=True)
                           then ONNXProgram.save(f, external_data=True)), exactly as it
                           writes it: opset 20, BN folded into Conv by onnxscript
                           (FuseBatchNormIntoConv) -- the folded weights KEEP the module
                           names (`layer1.0.conv1.weight` holds conv*BN-scale, not the .pth
                           tensor), folded biases `*.weight_bias`, int64 axes/shapes and
                           Clip bounds are inline, most parameters are in the .data file;
                           input `x`, output `linear`, global pool = ReduceMean(axes [-1,-2],
                           keepdims 1) + Reshape([1, C]); node metadata
                           (pkg.torch.onnx.name_scopes, namespace, class_hierarchy, fx_node,
                           stack_trace with this machine's paths) kept as written. Forcing
                           every initializer external (size_threshold=0) makes onnxruntime
                           reject the file (external int64 ReduceMean axes), so it is not done.
  The TorchScript file: opset 17, BN folded into Conv (unnamed `onnx::Conv_NNN` initializers),
  node names `/layer4/layer4.1/relu_1/Relu`, GlobalAveragePool + Flatten + Gemm, ReLU6 as
  Clip(x, Constant 0, Constant 6); static batch 1 in both files.
  NAME.ref.safetensors     float32: `input` [3,H,W]; `blob/<blob>` for every tree blob
                           ([C,H,W] or [C], no batch dim; post-activation value, the logits
                           for the top blob); `probs` [1000] (softmax of the logits);
                           `recon/<j>` raw gradient at the input [3,H,W].
  NAME.ref.json            {"generator", "model", "pth", "onnx": [..], "input_size": [H,W],
                           "blobs": [top-first tree blobs], "cases": [{key,path,rule,mult_mode}],
                           "children": [{path,rule,mult_mode,k,children:[{blob,channel,weight}]}],
                           "top5"}  -- cases/children/top5 as in tiny.ref.json.
                           NOTE: a case's "key" names its tensor. Root-only paths give the same
                           tensor for mult modes auto and manual (no filter, mult 1), so the
                           manual case points at the auto case's tensor (same key) to keep the
                           files small: never assume key == "recon/<case index>".

Semantics: shared/docs/reconstruction.md sections 2, 3, 4, 8, verbatim:
  * tree blobs (section 8): articulation tensors minus pooling/flatten outputs; a tensor
    consumed only by an activation is represented by the activation's output.
    resnet18: fc (logits), layer4.1, layer4.0, ..., layer1.0, relu (stem ReLU output).
      A block blob layerX.Y = relu(bn2(conv2(..)) + identity) (post-ReLU); the stem's maxpool
      output is excluded (pooling).
    mobilenet_v2: classifier.1 (logits), features.18, ..., features.0. features.N is the
      output of block N: for a residual InvertedResidual the Add output (no activation after
      it); for a non-residual one the projection BN output; features.0 / features.18 end in
      ReLU6 (post-ReLU6 value). Each blob's children live in the next blob of the list.
    squeezenet1_1 (torchvision SqueezeNet 1.1 tree, widths / 4, no BN, conv biases random,
      input 96x96): classifier.3 (the logits = flatten(avgpool(relu(classifier.1 conv))) --
      post-ReLU, so >= 0), features.12, .11, .10, .9, .7, .6, .4, .3 (each Fire's
      torch.cat of its two expand-ReLU outputs), features.1 (stem ReLU output). The
      ceil-mode max pools features.2/.5/.8 are excluded (pooling).
    googlenet (torchvision GoogLeNet, aux_logits=False, transform_input=False, every channel
      count / 8, random BN stats, input 96x96: maxpools give 48 -> 24 -> 12 -> 6 -> 3):
      fc, inception5b, 5a, 4e, 4d, 4c, 4b, 4a, 3b, 3a (each the inception torch.cat),
      conv3, conv2, conv1 (BasicConv2d F.relu outputs).
    densenet121 (torchvision.models.DenseNet(growth_rate=4, block_config=(6, 12, 24, 16),
      num_init_features=8, bn_size=2, drop_rate=0), exact module names, random BN stats,
      input 64x64: conv0 s2 -> 32, pool0 -> 16, transitions -> 8, 4, 2): classifier,
      relu (the functional F.relu after features.norm5 in DenseNet.forward), features.
      denseblock4 (the block's final torch.cat), features.transition3.conv (conv output
      before the avg pool), features.transition3.relu, features.denseblock3, .transition2.
      conv, .transition2.relu, .denseblock2, .transition1.conv, .transition1.relu,
      .denseblock1, features.relu0. The intra-block (per dense layer) cats are not
      articulation points: the block input skips to the block's final cat. A dense block cat
      holds CONV outputs (the avg-pooled transition conv and each layer's conv2), not ReLU
      outputs, so guided-neg seeded there is NOT zero (kept with its own tensor). The
      children of a transitionN.relu blob lie in one channel only (norm + ReLU are
      per-channel): the other k-1 children have weight exactly 0 (ties -> lower index);
      likewise features.denseblock1:c for c < 16 (a pass-through channel of pool0(relu0)).
      Exports: TorchScript keeps 62 BatchNormalization nodes (every norm1 after a cat, the
      transition norms, norm5; norm0 / norm2 fold into the conv before them) with named
      initializers, denselayer1's single-input cat as a 1-input Concat, functional relu as
      `/Relu`; dynamo drops the single-input cats (58 Concat), BN nodes named
      `node__native_batch_norm_legit_no_training_K__0`. 533k parameters: ~2.1 MiB in each
      model file, ~8.5 MiB in all.
    A concat blob (Fire / inception) is NOT an activation output: its "gradient at blob" is
    the gradient at the cat output itself, no rule there; the rules of the ReLUs feeding
    the cat apply below it. CONSEQUENCE: `guided-neg` seeded at a concat root (and at the
    SqueezeNet logits, avg-pooled ReLU outputs) is IDENTICALLY ZERO (the positive seed meets
    those ReLUs' [g < 0]); such cases are kept with the shared all-zero tensor key
    "recon/zero", and guided-neg is left out of paths rooted at a concat blob (their first
    filter would be 0/0, degenerate). For these two networks bit-identical reconstructions
    share one key (stem roots: no rectifier below the seed, all four rules agree).
    foreign (ForeignModule, input 36x36, 10 classes; foreign.pth its state_dict,
      foreign.onnx written by build_foreign_onnx in the style of non-PyTorch exporters:
      opset 13, ir 7, no initializers -- every weight a Constant node --, BatchNormalization
      NOT folded, Hardswish as Mul(x, Div(Clip(Add(x,3), 0, 6), 6)), exact GELU as
      Mul(Mul(x,0.5), Add(Erf(Div(x, sqrt2)), 1)), flatten as Reshape(x, Concat(Unsqueeze(
      Gather(Shape(x), 0)), [-1])), Linear as MatMul + Add, ending in Softmax(axis 1) ->
      `prob`; input `data`; node names `<Op>_<k>`, tensor names bare numbers, no metadata;
      checked with onnxruntime against the module: prob, logits and every blob tensor).
      Blobs (named by their producing ONNX node; JSON "blob_tensors" maps them to tensor
      names): Add_53 (logits = the Softmax input; MatMul+bias-Add read as one linear),
      Mul_39 (GELU output), Add_24 (residual Add of the Hardswish branch and the ReLU),
      Relu_8 (first ReLU). Derivation (section 8): articulation tensors are 2, 7, 8, 24,
      26, 31, 39, 40, 41, 49, 51, 53 (the depthwise branch 10..23 and the shape branch
      42..48 are bypassed); Conv+BN read as one conv (BN folded: 2 -> 7, 26 -> 31); minus
      pooling / reshape outputs 40, 41, 49; minus 7 and 31 (consumed only by one
      activation: the Relu, the GELU pattern); MatMul 51 + bias Add 53 read as one linear.
      Hardswish / GELU rules: section 8's rectifier row with f'(x) (SmoothRuleAct); the
      twin is a copy with real nn.ReLU / nn.Hardswish / nn.GELU modules whose full backward
      hooks rewrite the module's own true input gradient (all four rules), plus Captum
      Deconvolution (deconv only: Captum's guided is relu(g*f'(x)), not the table's row).
  * "gradient at a blob": for a blob ending in an activation, the gradient at the
    activation's INPUT after its backward rule (resnet: at the Add output after the block's
    last ReLU; stem: at bn1's output); otherwise the gradient at the blob tensor itself
    (logits; mobilenet residual Add outputs / projection-BN outputs).
  * rules: ReLU (x = input, g = incoming): gradient g*[x>0]; deconv g*[g>0];
    guided g*[x>0]*[g>0]; guided-neg g*[x>0]*[g<0]. ReLU6: the same with [0<x<6] in place
    of [x>0] (section 8 table). Everything else true gradient: conv, BN (eval affine),
    max pool (PyTorch's argmax), adaptive avg pool, flatten, linear, dropout (identity),
    residual Add (fan-out: sum of consumers).
  * root seed: conv blob -> spatial argmax of the channel of the (post-activation) blob
    value, first index on ties in row-major order (torch.argmax); fc blob -> the unit;
    value = mult * activation, mult = 1.0 for every blob; placed at the gradient-at-blob
    position (the root's own activation rule is NOT applied to the seed).
  * following node (bi, ci): backprop to the gradient at bi, keep channel ci only, times
    sum|g|/sum|g[ci]| (mode auto; float64, applied in float32) or mult = 1.0 (manual).
  * children of a path ending at blob b: g = gradient at the blob below b, a = its blob
    value (post-activation), w_j = |mean_{y,x} a_j*g_j| (fc: no mean), top-k, ties -> lower
    channel index.

Implementation (the trap): torchvision's BasicBlock calls ONE nn.ReLU(inplace=True) module
twice (after bn1 and after the add) and the stem's `relu` is a third module; Captum's
module hooks misapply the rules there. The reference is therefore an explicit FUNCTIONAL
forward over the module's parameters (F.conv2d, F.batch_norm with running stats, a custom
autograd Function with the rule in its backward at EVERY activation application,
F.max_pool2d, adaptive avg pool, flatten, F.linear), asserted to reproduce model(x) to 1e-5
relative, plus segment-by-segment torch.autograd.grad between filter points.
Cross-checks (asserted < 1e-5; error = max|ours - other| / max|other|, printed):
  * functional logits vs model(x) (the torchvision module itself);
  * `gradient` root-only, every root: plain torch.autograd on model(x) itself,
    d(seed * blob_output[c,y,x]) / d(input) via a forward hook on the block module
    (= d(seed * preact[c,y,x]) / d(input) since the seeded unit is active);
  * `guided` / `deconv` root-only and filtered paths: Captum GuidedBackprop / Deconvolution
    on a copy of the functional forward in which EVERY activation application is its own
    non-inplace nn.ReLU / nn.ReLU6 module, filters applied by tensor hooks; `gradient`
    filtered paths: plain autograd on that copy with the same hooks.
  * the ONNX files are run with onnxruntime (when installed) against model(x).
  * `guided-neg` has no twin; it is the section-2 table verbatim in the rule Function.

squeezenet1_1 / googlenet (added later; resnet18 / mobilenet_v2 files were not rewritten):
every autograd / Captum cross-check 0.0 (bit-exact); onnxruntime vs model(x) <= 1.5e-6.
Captum naive on the torchvision SqueezeNet matched (distinct inplace ReLU modules, each
called once); on GoogLeNet it is wrong (rel err ~4: BasicConv2d calls F.relu, no module to
hook, so Captum returns the plain gradient). Exports: no BatchNormalization node in either
GoogLeNet file (TorchScript folds BN into `onnx::Conv_NNN`; dynamo folds it by onnxscript
FuseBatchNormIntoConv, the Conv node then carries the BN's metadata, name_scopes
['', 'conv1', 'conv1.bn', '_native_batch_norm_legit_no_training'], output `getitem`); the
ceil-mode pools are MaxPool ceil_mode=1 pads 0 (branch4: pads 1, strides 1) in both;
global pool GlobalAveragePool + Flatten (TorchScript) vs ReduceMean([-1,-2], keepdims 1) +
Reshape([1, C]) (dynamo); SqueezeNet has no Gemm (TorchScript output = the Flatten).
Sizes: squeezenet1_1 3.9 MiB, googlenet 4.4 MiB (fewer cases than resnet18).

Results of the run that wrote the committed files: every autograd / Captum cross-check
agreed bit-exactly (0.0); onnxruntime vs model(x) <= 1.5e-6 relative. Captum run naively on
the torchvision ResNet (shared inplace nn.ReLU) also matched root-only (captum 0.9.0 hooks
per call); on MobileNetV2 it is wrong (rel err ~1-3) because Captum hooks only nn.ReLU and
leaves nn.ReLU6 with its true gradient -- the copy uses an nn.ReLU subclass computing relu6.
Sizes: each NAME.ref.safetensors is 3.4-4.4 MiB (28 distinct [3,H,W] reconstructions), each
model file ~1 MiB; ~13 MiB for both networks.

Versions: see the "generator" string of each NAME.ref.json (torch 2.15.0+cu132 CPU,
torchvision 0.29.2, captum 0.9.0, onnx 1.23.2, onnxscript 0.7.2, onnxruntime 1.32.0,
safetensors, numpy 2.4.6, Python 3.11.7), torch.set_num_threads(2).

Rerun (from the repo root):
    python3 -m venv /work/venv && /work/venv/bin/pip install torch torchvision captum \
        safetensors numpy onnx onnxscript onnxruntime
    /work/venv/bin/python tests/golden/make_golden_graph.py [resnet18] [mobilenet_v2] \
        [squeezenet1_1] [googlenet] [densenet121] [foreign]   (no argument: all of them)
Deterministic (fixed seeds); bit-identical reruns expected on the same versions / CPU.
"""

import json
import math
import os
import platform
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import BasicBlock, ResNet

import captum
from captum.attr import Deconvolution, GuidedBackprop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in tests/golden
from make_golden import most_active, path_str, rel_err  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(REPO, "tests", "golden")
RULES = ["gradient", "deconv", "guided", "guided-neg"]
NONEG = ["gradient", "deconv", "guided"]
MODES = ["auto", "manual"]

warnings.filterwarnings("ignore", message=".*backward hooks.*")
warnings.filterwarnings("ignore", category=DeprecationWarning)


# ----------------------------------------------------------------------------------------
# Rule activations
# ----------------------------------------------------------------------------------------

class RuleAct(torch.autograd.Function):
    """ReLU (t=None) or ReLU6/Clip(0,t) whose backward is the rule of sections 2 / 8."""

    @staticmethod
    def forward(ctx, x, rule, t):
        ctx.save_for_backward(x)
        ctx.rule, ctx.t = rule, t
        return x.clamp(min=0) if t is None else x.clamp(0, t)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        pos = (x > 0) if ctx.t is None else ((x > 0) & (x < ctx.t))
        if ctx.rule == "gradient":
            keep = pos
        elif ctx.rule == "deconv":
            keep = g > 0
        elif ctx.rule == "guided":
            keep = pos & (g > 0)
        elif ctx.rule == "guided-neg":
            keep = pos & (g < 0)
        else:
            raise ValueError(ctx.rule)
        return torch.where(keep, g, torch.zeros_like(g)), None, None


class ReLU6AsReLU(nn.ReLU):
    """ReLU6 that Captum treats as a ReLU (it hooks isinstance(m, nn.ReLU) only). With
    Captum's full backward hook: guided = relu(g * [0<x<6]), deconv = relu(g): exactly the
    ReLU6 row of section 8. (A plain nn.ReLU6 is silently left with its true gradient.)"""

    def forward(self, x):
        return F.relu6(x)


def _smooth_f(x, kind):
    if isinstance(kind, tuple):  # ("prelu", slopes [C]) or ("leaky", slope)
        return F.prelu(x, kind[1]) if kind[0] == "prelu" else F.leaky_relu(x, kind[1])
    return F.hardswish(x) if kind == "hardswish" else F.gelu(x)  # exact (erf) GELU


def _smooth_df(x, kind):
    """f'(x), written out (not autograd): hardswish as PyTorch's hardswish_backward
    (0 for x < -3, x/3 + 1/2 for -3 <= x <= 3, 1 above); GELU Phi(x) + x phi(x); PReLU /
    LeakyReLU 1 for x > 0, the (channel's) slope otherwise."""
    if isinstance(kind, tuple):
        a = kind[1]
        a = a.view(1, -1, 1, 1) if torch.is_tensor(a) else torch.full_like(x, a)
        return torch.where(x > 0, torch.ones_like(x), a.expand_as(x))
    if kind == "hardswish":
        return torch.where(x < -3, torch.zeros_like(x),
                           torch.where(x <= 3, x / 3 + 0.5, torch.ones_like(x)))
    cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))
    pdf = torch.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return cdf + x * pdf


class SmoothRuleAct(torch.autograd.Function):
    """Hardswish / GELU with the section-8 rectifier row in its backward: gradient g*f'(x),
    deconv g*[g>0], guided g*f'(x)*[g>0], guided-neg g*f'(x)*[g<0]."""

    @staticmethod
    def forward(ctx, x, rule, kind):
        ctx.save_for_backward(x)
        ctx.rule, ctx.kind = rule, kind
        return _smooth_f(x, kind)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        z = torch.zeros_like(g)
        if ctx.rule == "deconv":
            return torch.where(g > 0, g, z), None, None
        gd = g * _smooth_df(x, ctx.kind)
        if ctx.rule == "gradient":
            out = gd
        elif ctx.rule == "guided":
            out = torch.where(g > 0, gd, z)
        elif ctx.rule == "guided-neg":
            out = torch.where(g < 0, gd, z)
        else:
            raise ValueError(ctx.rule)
        return out, None, None


def rule_act(rule):
    # t: None (ReLU), a number (ReLU6 / Clip(0, t)) or "hardswish" / "gelu" (foreign net)
    return lambda x, name, t=None: (SmoothRuleAct.apply(x, rule, t)
                                    if isinstance(t, (str, tuple))
                                    else RuleAct.apply(x, rule, t))


def plain_act(x, name, t=None):
    if isinstance(t, (str, tuple)):
        return _smooth_f(x, t)
    return F.relu(x) if t is None else F.relu6(x)


def _conv(x, m):
    return F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _bn(x, m):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


# ----------------------------------------------------------------------------------------
# Networks: torchvision module + functional forward
# ----------------------------------------------------------------------------------------

def random_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))


def lsuv_convs(model, x, gen, target=None):
    """Kaiming-normal conv weights, then (in module order = execution order) each conv's
    weight is rescaled so that its output on `x` has std target(name) (default 1): with the
    random BN stats this keeps activations O(1) through every block."""
    target = target or (lambda n: 1.0)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for n, m in convs:
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
        for n, m in convs:
            got = {}
            h = m.register_forward_hook(lambda mod, i, o: got.__setitem__("o", o.detach().clone()))
            model(x)
            h.remove()
            m.weight.mul_(target(n) / float(got["o"].std()))


def init_linear(model, lin, x, gen, logit_std=2.5):
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen))
        lin.bias.zero_()
        s = float(model(x).std())
        lin.weight.mul_(logit_std / s)
        lin.bias.copy_(0.1 * torch.randn(lin.bias.shape, generator=gen))


class ResNet18Net:
    name = "resnet18"
    input_size = (112, 112)
    seed = 4242
    blobs = ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
             "layer1.1", "layer1.0", "relu"]

    def __init__(self, gen):
        widths = (8, 16, 32, 64)
        m = ResNet(BasicBlock, [2, 2, 2, 2])  # torchvision's class; rebuilt at reduced width
        m.inplanes = widths[0]
        m.dilation = 1
        m.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        m.bn1 = nn.BatchNorm2d(widths[0])
        m.layer1 = m._make_layer(BasicBlock, widths[0], 2)
        m.layer2 = m._make_layer(BasicBlock, widths[1], 2, stride=2)
        m.layer3 = m._make_layer(BasicBlock, widths[2], 2, stride=2)
        m.layer4 = m._make_layer(BasicBlock, widths[3], 2, stride=2)
        m.fc = nn.Linear(widths[3] * BasicBlock.expansion, 1000)
        m.eval()
        self.model = m
        self.gen = gen

    def init(self, x):
        random_bn(self.model, self.gen)
        # second conv of a block a bit smaller: the residual sum stays O(1)
        lsuv_convs(self.model, x, self.gen,
                   target=lambda n: 0.8 if n.endswith("conv2") else 1.0)
        init_linear(self.model, self.model.fc, x, self.gen)

    # activation application names (for the Captum copy) and the blob -> its own activation
    def blob_act(self, b):
        if b == "fc":
            return None
        return "relu" if b == "relu" else b + ".relu_1"

    def act_names(self):
        names = ["relu"]
        for li in range(1, 5):
            for bi in range(2):
                names += [f"layer{li}.{bi}.relu", f"layer{li}.{bi}.relu_1"]
        return names

    def act_is_relu6(self, n):
        return False

    def forward(self, x, act):
        """Returns (gt, val): gt[b] tensor carrying 'the gradient at blob b', val[b] the
        blob value (post-activation)."""
        m = self.model
        gt, val = {}, {}
        h = _bn(_conv(x, m.conv1), m.bn1)
        gt["relu"] = h
        h = act(h, "relu")
        val["relu"] = h
        mp = m.maxpool
        h = F.max_pool2d(h, mp.kernel_size, mp.stride, mp.padding, mp.dilation, mp.ceil_mode)
        for li in range(1, 5):
            for bi, blk in enumerate(getattr(m, f"layer{li}")):
                name = f"layer{li}.{bi}"
                o = act(_bn(_conv(h, blk.conv1), blk.bn1), name + ".relu")
                o = _bn(_conv(o, blk.conv2), blk.bn2)
                idt = h if blk.downsample is None else \
                    _bn(_conv(h, blk.downsample[0]), blk.downsample[1])
                s = o + idt
                gt[name] = s
                h = act(s, name + ".relu_1")
                val[name] = h
        h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
        logits = F.linear(h, m.fc.weight, m.fc.bias)
        gt["fc"] = logits
        val["fc"] = logits
        return gt, val

    def model_hook(self, b):
        """(module, kind) for hooked_run: where the blob lives in the real model."""
        m = self.model
        if b == "fc":
            return m.fc, "out"
        if b == "relu":
            return m.maxpool, "in"  # its input is the stem ReLU output
        li, bi = b[len("layer"):].split(".")
        return getattr(m, f"layer{li}")[int(bi)], "out"

    def plans(self):
        ALL = RULES
        cases = [  # (root blob, child picks, modes, rules)
            ("layer4.1", [], MODES, ALL),
            ("fc", [], MODES, ALL),
            ("layer4.1", [0, 0], MODES, ALL),        # layer4.1 -> layer4.0 -> layer3.1
            ("layer3.0", [0, 0, 0], MODES, ALL),     # layer3.0 -> 2.1 -> 2.0 -> 1.1
            ("relu", [], MODES, ALL),
        ]
        children = [  # (root, picks, rule, mode, k)
            ("layer4.1", [], "guided", "auto", 5),
            ("layer4.1", [], "gradient", "manual", 5),
            ("fc", [], "guided", "auto", 5),
            ("layer3.0", [0], "deconv", "auto", 5),
            ("layer1.0", [], "guided", "auto", 5),
        ]
        return cases, children


class MobileNetV2Net:
    name = "mobilenet_v2"
    input_size = (96, 96)
    seed = 5353

    def __init__(self, gen):
        from torchvision.ops.misc import Conv2dNormActivation
        m = torchvision.models.mobilenet_v2(weights=None, width_mult=0.25, round_nearest=8)
        # torchvision keeps last_channel = 1280 for width_mult < 1 (1.28 M classifier
        # weights): rebuild the last conv and the classifier at 64, same module names.
        last = 64
        m.features[18] = Conv2dNormActivation(m.features[18][0].in_channels, last,
                                              kernel_size=1, norm_layer=nn.BatchNorm2d,
                                              activation_layer=nn.ReLU6)
        m.last_channel = last
        m.classifier[1] = nn.Linear(last, 1000)
        m.eval()
        self.model = m
        self.gen = gen
        n = len(m.features)
        self.blobs = ["classifier.1"] + [f"features.{i}" for i in range(n - 1, -1, -1)]

    def init(self, x):
        random_bn(self.model, self.gen)
        # convs feeding a ReLU6 (names ending in ".0": Conv2dNormActivation's conv) at std 3,
        # so that ~2% of ReLU6 inputs exceed 6 and the [x < 6] half of the rule matters;
        # projection convs at std 1
        lsuv_convs(self.model, x, self.gen, target=lambda n: 3.0 if n.endswith(".0") else 1.0)
        init_linear(self.model, self.model.classifier[1], x, self.gen)

    def blob_act(self, b):
        n = len(self.model.features)
        if b in ("features.0", f"features.{n - 1}"):
            return b + ".2"
        return None

    def _seq(self, h, seq, prefix, act, names):
        for cn, c in seq.named_children():
            full = f"{prefix}.{cn}"
            if isinstance(c, nn.Conv2d):
                h = _conv(h, c)
            elif isinstance(c, nn.BatchNorm2d):
                h = _bn(h, c)
            elif isinstance(c, nn.ReLU6):
                if names is not None:
                    names[full] = h
                h = act(h, full, 6.0)
            elif isinstance(c, nn.Sequential):
                h = self._seq(h, c, full, act, names)
            else:
                raise TypeError(type(c))
        return h

    def act_names(self):
        names = []
        for n, c in self.model.named_modules():
            if isinstance(c, nn.ReLU6):
                names.append(n)
        return names

    def act_is_relu6(self, n):
        return True

    def forward(self, x, act):
        from torchvision.models.mobilenetv2 import InvertedResidual
        m = self.model
        gt, val = {}, {}
        h = x
        for i, blk in enumerate(m.features):
            name = f"features.{i}"
            pre = {}
            if isinstance(blk, InvertedResidual):
                o = self._seq(h, blk.conv, name + ".conv", act, None)
                h = h + o if blk.use_res_connect else o
                gt[name] = h
            else:  # Conv2dNormActivation ending in ReLU6
                h = self._seq(h, blk, name, act, pre)
                gt[name] = pre[name + ".2"]
            val[name] = h
        h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
        lin = m.classifier[1]
        logits = F.linear(h, lin.weight, lin.bias)  # classifier.0 dropout: identity (eval)
        gt["classifier.1"] = logits
        val["classifier.1"] = logits
        return gt, val

    def model_hook(self, b):
        if b == "classifier.1":
            return self.model.classifier[1], "out"
        blk = self.model.features[int(b.split(".")[1])]
        if self.blob_act(b) is not None:
            return blk[1], "out_clone"  # the BN before the (inplace) ReLU6
        return blk, "out"

    def plans(self):
        ALL = RULES
        n = len(self.model.features)
        top = f"features.{n - 2}"  # features.17
        cases = [
            (top, [], MODES, ALL),
            ("classifier.1", [], MODES, ALL),
            (top, [0, 0], MODES, ALL),                   # features.17 -> 16 -> 15
            ("features.6", [0, 0, 0], MODES, ALL),       # 6 -> 5 -> 4 -> 3 (5, 6 residual)
            ("features.0", [], MODES, ALL),
        ]
        children = [
            (top, [], "guided", "auto", 5),
            (top, [], "gradient", "manual", 5),
            ("classifier.1", [], "guided", "auto", 5),
            ("features.6", [0], "deconv", "auto", 5),
            ("features.1", [], "guided", "auto", 5),
            ("features.2", [], "guided", "auto", 5),
        ]
        return cases, children


def _maxpool(x, mp):
    return F.max_pool2d(x, mp.kernel_size, mp.stride, mp.padding, mp.dilation, mp.ceil_mode)


class SqueezeNet11Net:
    """torchvision SqueezeNet 1.1 module tree (exact names), every width / 4. No BatchNorm.
    Fire blobs are the torch.cat of the two expand ReLU outputs: the gradient at such a blob
    is the gradient at the cat output (no rule: the cat is not an activation output)."""
    name = "squeezenet1_1"
    input_size = (96, 96)
    seed = 6464
    blobs = ["classifier.3", "features.12", "features.11", "features.10", "features.9",
             "features.7", "features.6", "features.4", "features.3", "features.1"]
    # guided-neg root-only there is all zero: a Fire blob is a cat of expand-ReLU outputs
    # (the positive seed meets those ReLUs' [g < 0]); the logits are avg-pooled ReLU outputs
    guided_neg_zero_roots = ("features.12", "classifier.3")
    dedupe_equal = True  # bit-identical reconstructions share one key (size)

    def __init__(self, gen):
        from torchvision.models.squeezenet import Fire
        m = torchvision.models.squeezenet1_1(weights=None)
        m.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 4, 16, 16),
            Fire(32, 4, 16, 16),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(32, 8, 32, 32),
            Fire(64, 8, 32, 32),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 12, 48, 48),
            Fire(96, 12, 48, 48),
            Fire(96, 16, 64, 64),
            Fire(128, 16, 64, 64),
        )
        m.classifier = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(128, 1000, kernel_size=1),
                                     nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))
        m.eval()
        self.model = m
        self.gen = gen

    def init(self, x):
        m = self.model
        with torch.no_grad():
            for n, c in m.named_modules():
                if isinstance(c, nn.Conv2d):
                    s = 0.01 if n == "classifier.1" else 0.1
                    c.bias.copy_(s * torch.randn(c.bias.shape, generator=self.gen))
        # kaiming-normal, then each conv's output std on x = 1 (final conv: 3, so the
        # pooled post-ReLU logits spread out)
        lsuv_convs(m, x, self.gen, target=lambda n: 3.0 if n == "classifier.1" else 1.0)

    def blob_act(self, b):
        return "features.1" if b == "features.1" else None

    def act_names(self):
        return [n for n, c in self.model.named_modules() if isinstance(c, nn.ReLU)]

    def act_is_relu6(self, n):
        return False

    def forward(self, x, act):
        from torchvision.models.squeezenet import Fire
        m = self.model
        gt, val = {}, {}
        h = x
        for i, c in enumerate(m.features):
            name = f"features.{i}"
            if isinstance(c, nn.Conv2d):
                h = _conv(h, c)
            elif isinstance(c, nn.ReLU):
                gt[name] = h
                h = act(h, name)
                val[name] = h
            elif isinstance(c, nn.MaxPool2d):
                h = _maxpool(h, c)
            elif isinstance(c, Fire):
                s = act(_conv(h, c.squeeze), name + ".squeeze_activation")
                h = torch.cat([act(_conv(s, c.expand1x1), name + ".expand1x1_activation"),
                               act(_conv(s, c.expand3x3), name + ".expand3x3_activation")], 1)
                gt[name] = h
                val[name] = h
            else:
                raise TypeError(type(c))
        # classifier.0 dropout: identity (eval)
        h = act(_conv(h, m.classifier[1]), "classifier.2")
        logits = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
        gt["classifier.3"] = logits
        val["classifier.3"] = logits
        return gt, val

    def model_hook(self, b):
        m = self.model
        if b == "classifier.3":
            return m, "out"  # the flattened logits = the model's output
        if b == "features.1":
            return m.features[2], "in"  # the stem ReLU output
        return m.features[int(b.split(".")[1])], "out"

    def plans(self):
        ALL = RULES
        # trimmed to keep the fixture ~4 MiB (each [3,96,96] reconstruction is 108 KiB);
        # guided-neg is left out of paths rooted at a Fire blob: identically zero there
        # (see guided_neg_zero_roots; the first filter then divides 0 by 0: degenerate)
        cases = [
            ("features.12", [], MODES, ALL),
            ("classifier.3", [], MODES, ["gradient", "guided", "guided-neg"]),
            ("features.12", [0, 0], ["auto"], NONEG),       # features.12 -> 11 -> 10
            ("features.12", [0, 0], ["manual"], ["guided"]),
            ("features.7", [0, 0, 0], ["auto"], ["guided"]),  # features.7 -> 6 -> 4 -> 3
            ("features.1", [], MODES, ALL),
        ]
        children = [
            ("features.12", [], "guided", "auto", 5),
            ("classifier.3", [], "gradient", "manual", 5),
            ("features.4", [], "deconv", "auto", 5),
            ("features.3", [], "guided", "auto", 5),
        ]
        return cases, children


class GoogLeNetNet:
    """torchvision GoogLeNet (aux_logits=False, transform_input=False) module tree (exact
    names), every channel count / 8. BasicConv2d = conv (no bias) + bn (eps 1e-3) + F.relu
    (a function call, not a module: named `<basicconv>.relu` here). An inception blob is
    its torch.cat output (gradient there, no rule); conv1/conv2/conv3 are the BasicConv2d
    F.relu outputs (gradient at the relu input after the rule)."""
    name = "googlenet"
    input_size = (96, 96)
    seed = 7575
    blobs = ["fc", "inception5b", "inception5a", "inception4e", "inception4d", "inception4c",
             "inception4b", "inception4a", "inception3b", "inception3a", "conv3", "conv2",
             "conv1"]
    guided_neg_zero_roots = ("inception5b",)  # a cat of BasicConv2d ReLU outputs
    dedupe_equal = True  # bit-identical reconstructions share one key (size)
    INCEPTIONS = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                  "inception4d", "inception4e", "inception5a", "inception5b"]

    def __init__(self, gen):
        from torchvision.models.googlenet import BasicConv2d, Inception
        m = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                         init_weights=False, num_classes=1000)
        d = 8

        def inc(*a):
            assert all(v % d == 0 for v in a), a
            return Inception(*[v // d for v in a])

        m.conv1 = BasicConv2d(3, 64 // d, kernel_size=7, stride=2, padding=3)
        m.conv2 = BasicConv2d(64 // d, 64 // d, kernel_size=1)
        m.conv3 = BasicConv2d(64 // d, 192 // d, kernel_size=3, padding=1)
        m.inception3a = inc(192, 64, 96, 128, 16, 32, 32)
        m.inception3b = inc(256, 128, 128, 192, 32, 96, 64)
        m.inception4a = inc(480, 192, 96, 208, 16, 48, 64)
        m.inception4b = inc(512, 160, 112, 224, 24, 64, 64)
        m.inception4c = inc(512, 128, 128, 256, 24, 64, 64)
        m.inception4d = inc(512, 112, 144, 288, 32, 64, 64)
        m.inception4e = inc(528, 256, 160, 320, 32, 128, 128)
        m.inception5a = inc(832, 256, 160, 320, 32, 128, 128)
        m.inception5b = inc(832, 384, 192, 384, 48, 128, 128)
        m.fc = nn.Linear(1024 // d, 1000)
        assert m.aux1 is None and m.aux2 is None and not m.transform_input
        m.eval()
        self.model = m
        self.gen = gen

    def init(self, x):
        random_bn(self.model, self.gen)
        lsuv_convs(self.model, x, self.gen)
        init_linear(self.model, self.model.fc, x, self.gen)

    def blob_act(self, b):
        return b + ".relu" if b in ("conv1", "conv2", "conv3") else None

    def act_names(self):
        from torchvision.models.googlenet import BasicConv2d
        return [n + ".relu" for n, c in self.model.named_modules() if isinstance(c, BasicConv2d)]

    def act_is_relu6(self, n):
        return False

    def _bc(self, h, bc, name, act, gt=None, val=None):
        h = _bn(_conv(h, bc.conv), bc.bn)
        if gt is not None:
            gt[name] = h
        h = act(h, name + ".relu")
        if val is not None:
            val[name] = h
        return h

    def _inception(self, h, m, name, act):
        b1 = self._bc(h, m.branch1, name + ".branch1", act)
        b2 = self._bc(self._bc(h, m.branch2[0], name + ".branch2.0", act), m.branch2[1],
                      name + ".branch2.1", act)
        b3 = self._bc(self._bc(h, m.branch3[0], name + ".branch3.0", act), m.branch3[1],
                      name + ".branch3.1", act)
        b4 = self._bc(_maxpool(h, m.branch4[0]), m.branch4[1], name + ".branch4.1", act)
        return torch.cat([b1, b2, b3, b4], 1)

    def forward(self, x, act):
        m = self.model
        gt, val = {}, {}
        h = self._bc(x, m.conv1, "conv1", act, gt, val)
        h = _maxpool(h, m.maxpool1)
        h = self._bc(h, m.conv2, "conv2", act, gt, val)
        h = self._bc(h, m.conv3, "conv3", act, gt, val)
        h = _maxpool(h, m.maxpool2)
        for n in self.INCEPTIONS:
            if n == "inception4a":
                h = _maxpool(h, m.maxpool3)
            if n == "inception5a":
                h = _maxpool(h, m.maxpool4)
            h = self._inception(h, getattr(m, n), n, act)
            gt[n] = h
            val[n] = h
        h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
        logits = F.linear(h, m.fc.weight, m.fc.bias)  # dropout: identity (eval)
        gt["fc"] = logits
        val["fc"] = logits
        return gt, val

    def model_hook(self, b):
        m = self.model
        if b == "fc":
            return m.fc, "out"
        if b in ("conv1", "conv2", "conv3"):
            return getattr(m, b).bn, "out_clone"  # BN output before the inplace F.relu
        return getattr(m, b), "out"

    def plans(self):
        ALL = RULES
        # trimmed to keep the fixture ~4 MiB; no guided-neg on paths rooted at an inception
        # cat: identically zero there (see guided_neg_zero_roots)
        cases = [
            ("inception5b", [], MODES, ["gradient", "guided", "guided-neg"]),
            ("fc", [], MODES, ["gradient", "deconv", "guided-neg"]),
            ("inception4e", [0, 0], MODES, ["guided"]),                    # 4e -> 4d -> 4c
            ("inception3b", [0, 0, 0], ["auto"], ["gradient", "guided"]),  # 3b->3a->conv3->conv2
            ("conv1", [], MODES, ALL),
        ]
        children = [
            ("inception5b", [], "guided", "auto", 5),
            ("fc", [], "gradient", "manual", 5),
            ("inception3a", [], "deconv", "auto", 5),
            ("conv2", [], "guided", "auto", 5),
        ]
        return cases, children


class DenseNet121Net:
    """torchvision DenseNet-121 module tree (torchvision.models.DenseNet, block_config
    (6, 12, 24, 16), exact names) at reduced width: growth_rate 4, num_init_features 8,
    bn_size 2, drop_rate 0 (channels: block1 16 -> 64, transition1 -> 32, block2 -> 128,
    -> 64, block3 -> 256, -> 128, block4 -> 256), random BN stats, input 64x64 (conv0 s2 ->
    32, pool0 -> 16, transitions -> 8, 4, 2). A dense block blob is the block's final
    torch.cat (its input and every layer's conv2 output: conv outputs, NOT ReLU outputs);
    features.transitionN.conv is the transition conv output before its avg pool;
    features.transitionN.relu, features.relu0 and `relu` (the functional F.relu that
    DenseNet.forward applies after features.norm5) are post-ReLU values whose gradient-at-blob
    is at the ReLU input after the rule. The intra-block cats are no articulation points (the
    block input skips to the block's final cat)."""
    name = "densenet121"
    input_size = (64, 64)
    seed = 9797
    blobs = ["classifier", "relu", "features.denseblock4", "features.transition3.conv",
             "features.transition3.relu", "features.denseblock3", "features.transition2.conv",
             "features.transition2.relu", "features.denseblock2", "features.transition1.conv",
             "features.transition1.relu", "features.denseblock1", "features.relu0"]
    # a dense block cat holds conv outputs (transition conv via avg pool, each layer's
    # conv2), so guided-neg seeded there is NOT zero: no guided_neg_zero_roots here
    guided_neg_zero_roots = ()
    dedupe_equal = True  # bit-identical reconstructions share one key (size)
    ACT_BLOBS = ("relu", "features.relu0", "features.transition1.relu",
                 "features.transition2.relu", "features.transition3.relu")

    def __init__(self, gen):
        m = torchvision.models.DenseNet(growth_rate=4, block_config=(6, 12, 24, 16),
                                        num_init_features=8, bn_size=2, drop_rate=0,
                                        num_classes=1000)
        m.eval()
        self.model = m
        self.gen = gen

    def init(self, x):
        random_bn(self.model, self.gen)
        lsuv_convs(self.model, x, self.gen)
        init_linear(self.model, self.model.classifier, x, self.gen)

    def blob_act(self, b):
        return b if b in self.ACT_BLOBS else None

    def act_names(self):
        names = ["features.relu0"]
        f = self.model.features
        for bi in range(1, 5):
            for ln, _ in getattr(f, f"denseblock{bi}").items():
                names += [f"features.denseblock{bi}.{ln}.relu1",
                          f"features.denseblock{bi}.{ln}.relu2"]
            if bi < 4:
                names.append(f"features.transition{bi}.relu")
        return names + ["relu"]

    def act_is_relu6(self, n):
        return False

    def forward(self, x, act):
        m = self.model
        f = m.features
        gt, val = {}, {}
        h = _bn(_conv(x, f.conv0), f.norm0)
        gt["features.relu0"] = h
        h = act(h, "features.relu0")
        val["features.relu0"] = h
        h = _maxpool(h, f.pool0)
        for bi in range(1, 5):
            bname = f"features.denseblock{bi}"
            feats = [h]
            for ln, layer in getattr(f, f"denseblock{bi}").items():
                name = f"{bname}.{ln}"
                c = torch.cat(feats, 1)  # denselayer1: a single-input cat, as torchvision
                o = _conv(act(_bn(c, layer.norm1), name + ".relu1"), layer.conv1)
                o = _conv(act(_bn(o, layer.norm2), name + ".relu2"), layer.conv2)
                feats.append(o)  # drop_rate 0: no dropout
            h = torch.cat(feats, 1)
            gt[bname] = h
            val[bname] = h
            if bi < 4:
                t = getattr(f, f"transition{bi}")
                tn = f"features.transition{bi}"
                o = _bn(h, t.norm)
                gt[tn + ".relu"] = o
                o = act(o, tn + ".relu")
                val[tn + ".relu"] = o
                o = _conv(o, t.conv)
                gt[tn + ".conv"] = o
                val[tn + ".conv"] = o
                p = t.pool
                h = F.avg_pool2d(o, p.kernel_size, p.stride, p.padding, p.ceil_mode,
                                 p.count_include_pad)
        h = _bn(h, f.norm5)
        gt["relu"] = h
        h = act(h, "relu")  # DenseNet.forward's F.relu(features)
        val["relu"] = h
        h = torch.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1)
        logits = F.linear(h, m.classifier.weight, m.classifier.bias)
        gt["classifier"] = logits
        val["classifier"] = logits
        return gt, val

    def model_hook(self, b):
        m = self.model
        f = m.features
        if b == "classifier":
            return m.classifier, "out"
        if b == "relu":
            return f.norm5, "out_clone"  # norm5 output before the inplace F.relu
        if b == "features.relu0":
            return f.pool0, "in"  # the stem ReLU output
        if b.startswith("features.transition"):
            t = getattr(f, b.split(".")[1])
            return t.conv, ("out" if b.endswith(".conv") else "in")
        return getattr(f, b.split(".")[1]), "out"

    def plans(self):
        ALL = RULES
        # trimmed (a [3,64,64] reconstruction is 48 KiB); the model files cannot be small at
        # this width: 533k parameters (classifier 257k, convs 238k, BN 38k) = ~2.1 MiB in
        # each of .pth / .onnx / _dynamo.onnx.data. guided-neg IS kept at the dense block
        # roots: not identically zero there (the cat holds conv outputs, not ReLU outputs)
        cases = [
            ("features.denseblock4", [], MODES, ALL),
            ("classifier", [], MODES, ALL),
            # features.denseblock3 -> features.transition2.conv -> features.transition2.relu
            ("features.denseblock3", [0, 0], ["auto"], ALL),
            ("features.denseblock3", [0, 0], ["manual"], ["guided"]),
            # features.transition3.relu -> features.denseblock3 -> features.transition2.conv
            ("features.transition3.relu", [0, 0], ["auto"], ALL),
            ("features.relu0", [], MODES, ALL),
        ]
        children = [
            ("features.denseblock4", [], "guided", "auto", 5),
            ("classifier", [], "gradient", "manual", 5),
            ("features.transition2.relu", [], "deconv", "auto", 5),
            ("features.denseblock1", [], "guided", "auto", 5),
        ]
        return cases, children


class ForeignModule(nn.Module):
    """The PyTorch reference of foreign.onnx (same weights). Returns the logits; the ONNX
    graph adds the final Softmax."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise
        self.bn2 = nn.BatchNorm2d(8)
        self.hswish = nn.Hardswish()
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.gelu = nn.GELU()  # exact (erf)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        r = self.relu1(self.bn1(self.conv1(x)))
        s = self.hswish(self.bn2(self.conv2(r))) + r
        h = self.gelu(self.bn3(self.conv3(s)))
        h = torch.flatten(self.gap(self.pool(h)), 1)
        return self.fc(h)


class _OnnxW:
    """Writes a graph in the style of non-PyTorch exporters: node names `<Op>_<k>` (one
    counter over all nodes, Constants included), tensor names bare numbers, every weight a
    Constant node, no initializers, no metadata."""

    def __init__(self):
        self.nodes, self.k, self.t = [], 0, 0
        self.producer = {}

    def node(self, op, inputs, **attrs):
        from onnx import helper
        out = str(self.t)
        self.t += 1
        name = f"{op}_{self.k}"
        self.k += 1
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        self.producer[out] = name
        return out

    def const(self, arr):
        from onnx import numpy_helper
        arr = np.asarray(arr).copy(order="C")  # keeps 0-d scalars 0-d
        return self.node("Constant", [], value=numpy_helper.from_array(arr))


def build_foreign_onnx(m):
    """foreign.onnx from the module's weights (opset 13). Returns (ModelProto, tensors) with
    tensors[role] = tensor name, role in relu, add, gelu, logits, prob."""
    import onnx
    from onnx import TensorProto, helper
    w = _OnnxW()
    f32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa
    sc = lambda v: np.array(v, dtype=np.float32)  # noqa  0-d constants

    def conv_bn(x, conv, bn):
        ins = [x, w.const(f32(conv.weight))]
        if conv.bias is not None:
            ins.append(w.const(f32(conv.bias)))
        c = w.node("Conv", ins, kernel_shape=list(conv.kernel_size), strides=list(conv.stride),
                   pads=[conv.padding[0], conv.padding[1]] * 2, group=conv.groups,
                   dilations=[1, 1])
        return w.node("BatchNormalization",
                      [c, w.const(f32(bn.weight)), w.const(f32(bn.bias)),
                       w.const(f32(bn.running_mean)), w.const(f32(bn.running_var))],
                      epsilon=float(bn.eps), momentum=0.9)

    tn = {}
    r = w.node("Relu", [conv_bn("data", m.conv1, m.bn1)])
    tn["relu"] = r
    b2 = conv_bn(r, m.conv2, m.bn2)
    hs = w.node("Mul", [b2, w.node("Div", [w.node("Clip", [w.node("Add", [b2, w.const(sc(3.0))]),
                                                        w.const(sc(0.0)), w.const(sc(6.0))]),
                                          w.const(sc(6.0))])])
    s = w.node("Add", [hs, r])
    tn["add"] = s
    b3 = conv_bn(s, m.conv3, m.bn3)
    erf1 = w.node("Add", [w.node("Erf", [w.node("Div", [b3, w.const(sc(math.sqrt(2.0)))])]),
                          w.const(sc(1.0))])
    ge = w.node("Mul", [w.node("Mul", [b3, w.const(sc(0.5))]), erf1])
    tn["gelu"] = ge
    mp = w.node("MaxPool", [ge], kernel_shape=[2, 2], strides=[2, 2])
    gp = w.node("GlobalAveragePool", [mp])
    n0 = w.node("Gather", [w.node("Shape", [gp]), w.const(np.array(0, dtype=np.int64))], axis=0)
    shape = w.node("Concat", [w.node("Unsqueeze", [n0, w.const(np.array([0], dtype=np.int64))]),
                              w.const(np.array([-1], dtype=np.int64))], axis=0)
    fl = w.node("Reshape", [gp, shape])
    lg = w.node("Add", [w.node("MatMul", [fl, w.const(f32(m.fc.weight).T.copy())]),
                        w.const(f32(m.fc.bias))])
    tn["logits"] = lg
    pr = w.node("Softmax", [lg], axis=1)
    tn["prob"] = pr
    # rename the graph output "prob" (inputs "data"): the only named tensors
    w.nodes[-1].output[0] = "prob"
    w.producer["prob"] = w.producer.pop(pr)
    tn["prob"] = "prob"
    H, W_ = ForeignNet.input_size
    g = helper.make_graph(w.nodes, "foreign",
                          [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, H, W_])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])])
    mp_ = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                            producer_name="treevis-golden-foreign", producer_version="1")
    mp_.ir_version = 7
    onnx.checker.check_model(mp_)
    return mp_, tn, w.producer


class ForeignNet:
    """A small CNN written to ONNX in the style of other exporters (see build_foreign_onnx),
    with its PyTorch reference. Blob names are the ONNX names of the nodes producing the
    blob tensors (the graph has no module names)."""
    name = "foreign"
    input_size = (36, 36)
    seed = 8686
    dedupe_equal = True
    roles = ("logits", "gelu", "add", "relu")

    def build_onnx(self):
        return build_foreign_onnx(self.model)

    def true_acts(self):
        """The net's activations as real torch modules (true autograd), by name."""
        return {"relu1": nn.ReLU(), "hswish": nn.Hardswish(), "gelu": nn.GELU()}

    def __init__(self, gen):
        m = ForeignModule()
        m.eval()
        self.model = m
        self.gen = gen
        _, tn, prod = build_foreign_onnx(m)
        self.tn = tn
        self.bname = {role: prod[tn[role]] for role in ("relu", "add", "gelu", "logits")}
        b = self.bname
        self.blobs = [b["logits"], b["gelu"], b["add"], b["relu"]]
        # the residual Add is no activation output; below it Hardswish and ReLU see only the
        # positive seed: guided-neg root-only there is identically zero
        self.guided_neg_zero_roots = (b["add"],)
        self.extra_json = {
            "blob_tensors": {b[r]: tn[r] for r in ("logits", "gelu", "add", "relu")},
            "blob_roles": {b["logits"]: "logits (Softmax input; MatMul + Add bias)",
                           b["gelu"]: "GELU output (erf pattern)",
                           b["add"]: "residual Add output (Hardswish branch + ReLU)",
                           b["relu"]: "first ReLU output"},
        }

    def init(self, x):
        random_bn(self.model, self.gen)
        with torch.no_grad():
            self.model.conv1.bias.copy_(0.1 * torch.randn(8, generator=self.gen))
        # conv outputs at std 2: Hardswish / GELU see their curved parts and tails
        lsuv_convs(self.model, x, self.gen, target=lambda n: 2.0)
        init_linear(self.model, self.model.fc, x, self.gen)

    def blob_act(self, b):
        n = self.bname
        return {n["relu"]: "relu1", n["gelu"]: "gelu"}.get(b)

    def act_names(self):
        return ["relu1", "hswish", "gelu"]

    def act_kind(self, n):
        return {"relu1": None, "hswish": "hardswish", "gelu": "gelu"}[n]

    def forward(self, x, act):
        m, n = self.model, self.bname
        gt, val = {}, {}
        h = _bn(_conv(x, m.conv1), m.bn1)
        gt[n["relu"]] = h
        r = act(h, "relu1")
        val[n["relu"]] = r
        s = act(_bn(_conv(r, m.conv2), m.bn2), "hswish", "hardswish") + r
        gt[n["add"]] = s
        val[n["add"]] = s
        h = _bn(_conv(s, m.conv3), m.bn3)
        gt[n["gelu"]] = h
        h = act(h, "gelu", "gelu")
        val[n["gelu"]] = h
        h = torch.flatten(F.adaptive_avg_pool2d(_maxpool(h, m.pool), (1, 1)), 1)
        logits = F.linear(h, m.fc.weight, m.fc.bias)
        gt[n["logits"]] = logits
        val[n["logits"]] = logits
        return gt, val

    def model_hook(self, b):
        m, n = self.model, self.bname
        if b == n["logits"]:
            return m.fc, "out"
        if b == n["relu"]:
            return m.relu1, "out"
        if b == n["gelu"]:
            return m.bn3, "out"
        return m.conv3, "in"  # the residual sum

    def plans(self):
        b = self.blobs
        cases = [
            (b[0], [], MODES, RULES),          # logits, top class
            (b[1], [], MODES, RULES),          # GELU blob
            (b[2], [], MODES, RULES),          # residual Add blob
            (b[3], [], MODES, RULES),          # first ReLU
            (b[1], [0, 0], ["auto"], RULES),   # GELU -> Add -> ReLU
            (b[0], [0, 0, 0], ["auto"], RULES),  # logits -> GELU -> Add -> ReLU
            (b[1], [0, 0], ["manual"], ["guided"]),
        ]
        children = [
            (b[0], [], "guided", "auto", 5),
            (b[1], [], "guided", "auto", 5),
            (b[1], [], "gradient", "manual", 5),
            (b[2], [], "deconv", "auto", 5),
            (b[1], [0], "guided-neg", "auto", 5),
        ]
        return cases, children

    # ---- independent twin (all four rules) ----
    def other_impl(self, inp, path, rule, mode):
        """The same functional forward, but every activation is a REAL torch module
        (nn.ReLU / nn.Hardswish / nn.GELU, true autograd) whose full backward hook rewrites
        its input gradient from the module's own true gradient d = g*f'(x) and g: gradient
        d, deconv g*[g>0], guided d*[g>0], guided-neg d*[g<0]. Filters: tensor hooks, as in
        CaptumCopy. Independent of SmoothRuleAct's written-out f'(x)."""
        net = self

        def hook(mod, gin, gout):
            d, g = gin[0], gout[0]
            if rule == "gradient":
                return (d,)
            if rule == "deconv":
                return (torch.where(g > 0, g, torch.zeros_like(g)),)
            keep = (g > 0) if rule == "guided" else (g < 0)
            return (torch.where(keep, d, torch.zeros_like(d)),)

        mods = self.true_acts()
        for mo in mods.values():
            mo.register_full_backward_hook(hook)

        class Copy(CaptumCopy):
            def __init__(self):
                nn.Module.__init__(self)
                self.net, self.path, self.mode = net, path, mode
                self.key = {k: k for k in mods}
                self.acts = nn.ModuleDict(mods)

        w = Copy()
        x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
        y = w(x)
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
        return g.detach()[0], "module backward hooks on distinct true activations"

    def captum_deconv(self, inp, path, mode):
        """Captum Deconvolution on a copy whose activations are nn.ReLU subclasses computing
        ReLU / Hardswish / GELU: Captum's deconv hook returns relu(grad_output) = the deconv
        row of section 8 for every rectifier. (Captum's guided, relu(g * f'(x)), is NOT the
        section-8 guided row where f' < 0, so it is not used.)"""
        net = self

        class AsReLU(nn.ReLU):
            def __init__(self, kind):
                super().__init__()
                self.kind = kind

            def forward(self, x):
                return F.relu(x) if self.kind is None else _smooth_f(x, self.kind)

        class Copy(CaptumCopy):
            def __init__(self):
                nn.Module.__init__(self)
                self.net, self.path, self.mode = net, path, mode
                self.key = {k: k for k in net.act_names()}
                self.acts = nn.ModuleDict({k: AsReLU(net.act_kind(k)) for k in net.act_names()})

        x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
        return Deconvolution(Copy()).attribute(x, target=0).detach()[0]

    # ---- export: foreign.onnx, verified with onnxruntime ----
    def export(self, x, errs):
        import onnx
        mp, tn, _ = self.build_onnx()
        fname = f"{self.name}.onnx"
        f = os.path.join(OUT_DIR, fname)
        onnx.save(mp, f)
        try:
            import onnxruntime as ort
        except ImportError:
            print(f"  onnxruntime not installed: {fname} not run")
            return [f]
        # a copy exposing the blob tensors as extra outputs
        from onnx import helper, TensorProto
        mp2 = onnx.load(f)
        for role in self.roles:
            mp2.graph.output.append(helper.make_tensor_value_info(tn[role], TensorProto.FLOAT,
                                                                  None))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        outs = {}
        for tag, model_bytes, opt in (("file", mp.SerializeToString(), True),
                                      ("blobs", mp2.SerializeToString(), False)):
            so2 = ort.SessionOptions()
            so2.intra_op_num_threads = 2
            if not opt:
                so2.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            s = ort.InferenceSession(model_bytes, so2, providers=["CPUExecutionProvider"])
            names = [o.name for o in s.get_outputs()]
            outs[tag] = dict(zip(names, s.run(None, {"data": x.numpy()})))
        with torch.no_grad():
            ref = self.model(x)
            _, val = self.forward(x, plain_act)
        checks = [("prob", outs["file"]["prob"], F.softmax(ref, dim=1)),
                  ("prob (no ORT graph opt)", outs["blobs"]["prob"], F.softmax(ref, dim=1))]
        for role in self.roles:
            checks.append((f"{role} tensor {tn[role]}", outs["blobs"][tn[role]],
                           val[self.bname[role]]))
        for what, got, want in checks:
            e = rel_err(torch.from_numpy(got), want)
            errs.append((self.name, "onnxruntime", fname, "", "", f"{what} vs PyTorch", e))
            print(f"  onnxruntime {fname} {what}: rel err {e:.2e}")
            assert e < 1e-4, what
        return [f]


class OpsModule(nn.Module):
    """The PyTorch reference of opsnet.onnx (same weights): the ops a model downloaded from
    elsewhere brings that torchvision's classics do not. Returns the logits; the ONNX graph
    adds the final Softmax."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.45, 0.40, 0.35]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.20, 0.30]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, (3, 5), stride=(1, 2), bias=True)  # after an uneven pad
        self.bn1 = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, (3, 1), groups=8, bias=False)  # padded 0 above, 2 below
        self.bn2 = nn.BatchNorm2d(8)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.scale = nn.Parameter(torch.ones(8, 1, 1))
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
        self.temperature = 2.0
        self.pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)  # modules: hook points
        self.temp = _DivBy(self.temperature)

    def forward(self, x):
        x = (x - self.mean) / self.std
        r1 = self.prelu(self.bn1(self.conv1(F.pad(x, (2, 1, 0, 1)))))
        h2 = F.leaky_relu(self.bn2(self.conv2(F.pad(r1, (0, 0, 0, 2)))), 0.1)
        gate = F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(h2, 1)))))
        res = self.scale * (h2 * gate) + r1
        c3 = F.relu(self.conv3(self.pool(res)))
        m = F.max_pool2d(c3, (2, 3), stride=2, padding=(0, 1))
        return self.temp(self.fc(torch.flatten(F.adaptive_avg_pool2d(m, 1), 1)))


class _DivBy(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.t = t

    def forward(self, x):
        return x / self.t


def build_ops_onnx(m):
    """opsnet.onnx from the module's weights (opset 13, weights as Constant nodes): Sub and
    Div by per-channel constants, a zero Pad folded into a 3x5 stride-(1,2) Conv, a
    per-channel PRelu, a depthwise 3x1 Conv with pads [0,0,2,0], LeakyRelu, a
    squeeze-and-excitation gate (GlobalAveragePool, Conv, Relu, Conv, HardSigmoid, Mul of two
    activations), Mul by a constant on the left, a residual Add, AveragePool without the
    padding in the divisor, a 2x3 MaxPool padded left and right, Gemm(transB), Div by a
    scalar, Softmax. Returns (ModelProto, roles -> tensor names, tensor -> producing node)."""
    import onnx
    from onnx import TensorProto, helper
    w = _OnnxW()
    f32 = lambda t: t.detach().numpy().astype(np.float32)  # noqa

    def conv(x, c, pads, bn=None):
        ins = [x, w.const(f32(c.weight))]
        if c.bias is not None:
            ins.append(w.const(f32(c.bias)))
        y = w.node("Conv", ins, kernel_shape=list(c.kernel_size), strides=list(c.stride),
                   pads=pads, group=c.groups, dilations=[1, 1])
        if bn is None:
            return y
        return w.node("BatchNormalization",
                      [y, w.const(f32(bn.weight)), w.const(f32(bn.bias)),
                       w.const(f32(bn.running_mean)), w.const(f32(bn.running_var))],
                      epsilon=float(bn.eps), momentum=0.9)

    tn = {}
    x = w.node("Div", [w.node("Sub", ["data", w.const(f32(m.mean))]), w.const(f32(m.std))])
    x = w.node("Pad", [x, w.const(np.array([0, 0, 0, 2, 0, 0, 1, 1], dtype=np.int64))],
               mode="constant")
    b1 = conv(x, m.conv1, [0, 0, 0, 0], m.bn1)
    r1 = w.node("PRelu", [b1, w.const(f32(m.prelu.weight).reshape(8, 1, 1))])
    tn["prelu"] = r1
    h2 = w.node("LeakyRelu", [conv(r1, m.conv2, [0, 0, 2, 0], m.bn2)], alpha=0.1)
    s = w.node("GlobalAveragePool", [h2])
    s = w.node("Relu", [conv(s, m.se1, [0, 0, 0, 0])])
    g = w.node("HardSigmoid", [conv(s, m.se2, [0, 0, 0, 0])], alpha=1.0 / 6, beta=0.5)
    ls = w.node("Mul", [w.const(f32(m.scale)), w.node("Mul", [h2, g])])
    res = w.node("Add", [ls, r1])
    tn["add"] = res
    p = w.node("AveragePool", [res], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=0)
    c3 = w.node("Relu", [conv(p, m.conv3, [1, 1, 1, 1])])
    tn["relu"] = c3
    mp = w.node("MaxPool", [c3], kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 0, 1])
    fl = w.node("Flatten", [w.node("GlobalAveragePool", [mp])], axis=1)
    lg = w.node("Gemm", [fl, w.const(f32(m.fc.weight)), w.const(f32(m.fc.bias))], transB=1)
    lg = w.node("Div", [lg, w.const(np.array(m.temperature, dtype=np.float32))])
    tn["logits"] = lg
    w.node("Softmax", [lg], axis=1)
    w.nodes[-1].output[0] = "prob"
    tn["prob"] = "prob"
    H, W_ = OpsNet.input_size
    gr = helper.make_graph(w.nodes, "opsnet",
                           [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, H, W_])],
                           [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])])
    mp_ = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 13)],
                            producer_name="treevis-golden-opsnet", producer_version="1")
    mp_.ir_version = 7
    onnx.checker.check_model(mp_)
    return mp_, tn, w.producer


class OpsNet(ForeignNet):
    """A small CNN of the ops of build_ops_onnx, in the style of other exporters, with its
    PyTorch reference. The input is not square (32x28). Blobs are named by their producing
    ONNX nodes: the logits (the Div by the temperature), the ReLU after conv3, the residual
    Add, the PRelu (the normalisation prefix, the SE branch and the pooled tensors are no
    blobs by section 8)."""
    name = "opsnet"
    input_size = (32, 28)
    seed = 5151
    dedupe_equal = True
    roles = ("logits", "relu", "add", "prelu")

    def __init__(self, gen):
        m = OpsModule()
        m.eval()
        self.model = m
        self.gen = gen
        _, tn, prod = build_ops_onnx(m)
        self.tn = tn
        self.bname = {role: prod[tn[role]] for role in self.roles}
        b = self.bname
        self.blobs = [b[r] for r in self.roles]
        self.guided_neg_zero_roots = (b["add"],)
        self.extra_json = {
            "blob_tensors": {b[r]: tn[r] for r in self.roles},
            "blob_roles": {b["logits"]: "logits (Gemm / temperature; the Softmax input)",
                           b["relu"]: "ReLU after conv3",
                           b["add"]: "residual Add (layer scale * SE-gated branch + PRelu)",
                           b["prelu"]: "per-channel PRelu output"},
        }

    def build_onnx(self):
        return build_ops_onnx(self.model)

    def true_acts(self):
        pr = nn.PReLU(8)
        with torch.no_grad():
            pr.weight.copy_(self.model.prelu.weight)
        return {"prelu": pr, "leaky": nn.LeakyReLU(0.1), "se_relu": nn.ReLU(),
                "relu3": nn.ReLU()}

    def init(self, x):
        m = self.model
        random_bn(m, self.gen)
        with torch.no_grad():
            m.conv1.bias.copy_(0.1 * torch.randn(8, generator=self.gen))
            m.prelu.weight.copy_(torch.linspace(-0.3, 0.6, 8))
            m.scale.copy_(0.5 + torch.rand(8, 1, 1, generator=self.gen))
        lsuv_convs(m, x, self.gen, target=lambda n: 1.5)
        init_linear(m, m.fc, x, self.gen)

    def blob_act(self, b):
        n = self.bname
        return {n["prelu"]: "prelu", n["relu"]: "relu3"}.get(b)

    def act_names(self):
        return ["prelu", "leaky", "se_relu", "relu3"]

    def act_kind(self, n):
        return {"prelu": ("prelu", self.model.prelu.weight.detach()), "leaky": ("leaky", 0.1),
                "se_relu": None, "relu3": None}[n]

    def forward(self, x, act):
        m, n = self.model, self.bname
        gt, val = {}, {}
        x = (x - m.mean) / m.std
        h = _bn(_conv(F.pad(x, (2, 1, 0, 1)), m.conv1), m.bn1)
        gt[n["prelu"]] = h
        r1 = act(h, "prelu", self.act_kind("prelu"))
        val[n["prelu"]] = r1
        h2 = act(_bn(_conv(F.pad(r1, (0, 0, 0, 2)), m.conv2), m.bn2), "leaky",
                 self.act_kind("leaky"))
        s = act(_conv(F.adaptive_avg_pool2d(h2, 1), m.se1), "se_relu")
        gate = F.hardsigmoid(_conv(s, m.se2))  # a gate: its true gradient under every rule
        res = m.scale * (h2 * gate) + r1
        gt[n["add"]] = res
        val[n["add"]] = res
        p = F.avg_pool2d(res, 3, 2, 1, count_include_pad=False)
        h = _conv(p, m.conv3)
        gt[n["relu"]] = h
        c3 = act(h, "relu3")
        val[n["relu"]] = c3
        mp = F.max_pool2d(c3, (2, 3), stride=2, padding=(0, 1))
        logits = F.linear(torch.flatten(F.adaptive_avg_pool2d(mp, 1), 1), m.fc.weight,
                          m.fc.bias) / m.temperature
        gt[n["logits"]] = logits
        val[n["logits"]] = logits
        return gt, val

    def model_hook(self, b):
        m, n = self.model, self.bname
        if b == n["logits"]:
            return m.temp, "out"
        if b == n["prelu"]:
            return m.prelu, "out"
        if b == n["relu"]:
            return m.conv3, "out"
        return m.pool, "in"  # the residual sum


# ----------------------------------------------------------------------------------------
# Reference reconstruction
# ----------------------------------------------------------------------------------------

class Forward:
    def __init__(self, net, inp, rule):
        self.net = net
        self.x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
        self.gt, self.val = net.forward(self.x, rule_act(rule))

    def act(self, b):
        return self.val[b].detach()[0]


def seed_of(a, c0):
    """a: blob value [C,H,W] or [C]. Returns (index into the [1,...] tensor, activation)."""
    if a.dim() == 3:
        ch = a[c0]
        flat = int(torch.argmax(ch.reshape(-1)))  # first max, row-major
        y, x = divmod(flat, ch.shape[1])
        return (0, c0, y, x), float(a[c0, y, x])
    return (0, c0), float(a[c0])


MULT = 1.0


def filter_grad(g, ci, mode):
    f = torch.zeros_like(g)
    f[:, ci] = g[:, ci]
    if mode == "auto":
        den = g[:, ci].double().abs().sum().item()
        if den == 0.0:
            return torch.zeros_like(g), True
        s = g.double().abs().sum().item() / den
    elif mode == "manual":
        s = MULT
    else:
        raise ValueError(mode)
    return f * torch.tensor(s, dtype=torch.float32), False


def backprop_path(fw, path, mode, to=None):
    b0, c0 = path[0]
    idx, a = seed_of(fw.act(b0), c0)
    cur = fw.gt[b0]
    g = torch.zeros_like(cur)
    g[idx] = MULT * a
    deg = False
    for bi, ci in path[1:]:
        ti = fw.gt[bi]
        (gi,) = torch.autograd.grad(cur, ti, g, retain_graph=True)
        g, d = filter_grad(gi, ci, mode)
        deg |= d
        cur = ti
    target = fw.x if to is None else fw.gt[to]
    (gout,) = torch.autograd.grad(cur, target, g, retain_graph=True)
    return gout, deg


def below(net, b):
    return net.blobs[net.blobs.index(b) + 1]


def children_of(fw, path, mode, k=5):
    net = fw.net
    bl = below(net, path[-1][0])
    g, deg = backprop_path(fw, path, mode, to=bl)
    a = fw.act(bl).double()
    g = g.detach()[0].double()
    prod = a * g
    w = prod.reshape(prod.shape[0], -1).mean(dim=1).abs() if prod.dim() == 3 else prod.abs()
    w = w.numpy()
    order = np.argsort(-w, kind="stable")
    return bl, [(int(j), float(w[j])) for j in order[:k]], deg


def recon(net, inp, path, rule, mode):
    fw = Forward(net, inp, rule)
    g, deg = backprop_path(fw, path, mode)
    return g.detach()[0], deg


# ----------------------------------------------------------------------------------------
# Cross-checks
# ----------------------------------------------------------------------------------------

class CaptumCopy(nn.Module):
    """The functional forward with EVERY activation application its own non-inplace
    nn.ReLU / nn.ReLU6 module (so Captum's module hooks see each application once). Returns
    seed * the seeded element of the root's gradient-at-blob tensor as [1,1]; the path's
    filters are tensor hooks on the filter blobs' gradient tensors."""

    def __init__(self, net, path, mode):
        super().__init__()
        self.net, self.path, self.mode = net, path, mode
        keys = net.act_names()
        self.key = {n: n.replace(".", "__") for n in keys}
        self.acts = nn.ModuleDict({self.key[n]: (ReLU6AsReLU() if net.act_is_relu6(n)
                                                 else nn.ReLU(inplace=False)) for n in keys})
        # params: reuse the real model's tensors (not registered here: Captum only needs the
        # activation modules; the torchvision model's own ReLU modules are NOT submodules, so
        # Captum hooks exactly our distinct ones)

    def forward(self, x):
        net = self.net
        filt = {b: c for b, c in self.path[1:]}
        filt_act = {net.blob_act(b): b for b in filt if net.blob_act(b) is not None}
        plain_filt = [b for b in filt if net.blob_act(b) is None]
        pending = {}

        def act(h, name, t=None):
            out = self.acts[self.key[name]](h)
            if name in filt_act:  # register after the module ran (after Captum's hook)
                b = filt_act[name]
                c = filt[b]
                h.register_hook(lambda g, c=c: filter_grad(g, c, self.mode)[0])
            return out

        gt, val = net.forward(x, act)
        for b in plain_filt:
            c = filt[b]
            gt[b].register_hook(lambda g, c=c: filter_grad(g, c, self.mode)[0])
        b0, c0 = self.path[0]
        idx, a = seed_of(val[b0].detach()[0], c0)
        return (gt[b0][idx] * (MULT * a)).reshape(1, 1)


def other_impl(net, inp, path, rule, mode):
    w = CaptumCopy(net, path, mode)
    x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
    if rule == "gradient":
        y = w(x)
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
        return g.detach()[0]
    cls = {"guided": GuidedBackprop, "deconv": Deconvolution}[rule]
    return cls(w).attribute(x, target=0).detach()[0]


def hooked_run(net, b0, x):
    """Runs the torchvision model on x and returns the tensor that carries 'the gradient at
    blob b0' (or, for a ReLU block output, the post-ReLU value: same gradient at an active
    unit), captured by a module hook. kind: out = module output; in = module input;
    out_clone = module output, replaced by a clone so that the inplace activation after it
    does not overwrite it (the captured tensor stays the pre-activation)."""
    mod, kind = net.model_hook(b0)
    got = {}
    if kind == "in":
        h = mod.register_forward_pre_hook(lambda md, i: got.__setitem__("o", i[0]))
    elif kind == "out":
        h = mod.register_forward_hook(lambda md, i, o: got.__setitem__("o", o))
    else:
        def hk(md, i, o):
            got["o"] = o
            return o.clone()
        h = mod.register_forward_hook(hk)
    try:
        net.model(x)
    finally:
        h.remove()
    return got["o"]


def plain_on_model(net, inp, b0, c0, fw):
    """`gradient` rule root-only on the torchvision model itself (plain autograd)."""
    idx, a = seed_of(fw.act(b0), c0)
    x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
    o = hooked_run(net, b0, x)
    (g,) = torch.autograd.grad(o[idx] * (MULT * a), x)
    return g.detach()[0]


def captum_on_model(net, inp, b0, c0, rule, fw):
    """Captum run naively on the torchvision model (shared / inplace activation modules):
    probes the trap. Returns the attribution or the exception text."""
    m = net.model
    idx, a = seed_of(fw.act(b0), c0)

    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            o = hooked_run(net, b0, x)
            return (o[idx] * (MULT * a)).reshape(1, 1)

    x = inp.detach().clone().unsqueeze(0).requires_grad_(True)
    cls = {"guided": GuidedBackprop, "deconv": Deconvolution}[rule]
    try:
        return cls(W()).attribute(x, target=0).detach()[0]
    except Exception as e:  # noqa
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


# ----------------------------------------------------------------------------------------
# Fixture generation (rel_err, path_str, most_active: make_golden.py's)
# ----------------------------------------------------------------------------------------


def derive_path(net, inp, root, picks, rule, mode="auto"):
    fw = Forward(net, inp, rule)
    path = [(root, most_active(fw, root))]
    for p in picks:
        bl, ch, _ = children_of(fw, path, mode, k=max(5, p + 1))
        assert ch[p][1] > 0, f"child #{p} of {path_str(path)} has zero weight"
        path.append((bl, ch[p][0]))
    return path


def versions():
    import onnx
    import onnxscript
    import safetensors
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = "n/a"
    return (f"make_golden_graph.py; torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}, captum {captum.__version__}, onnx {onnx.__version__}, "
            f"onnxscript {onnxscript.__version__}, onnxruntime {ort}, safetensors "
            f"{safetensors.__version__}, numpy {np.__version__}, python "
            f"{platform.python_version()}, threads {torch.get_num_threads()}")


def smooth_noise(gen, shape, low, std=1.0, white=0.15):
    c, h, w = shape
    z = torch.randn(1, c, low, low, generator=gen)
    z = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    z = z / z.std()
    z = z + white * torch.randn(1, c, h, w, generator=gen)
    return (z / z.std() * std)[0]


def export_onnx(net, x, name, errs):
    import onnx
    m = net.model
    f1 = os.path.join(OUT_DIR, f"{name}.onnx")
    torch.onnx.export(m, (x,), f1, dynamo=False, opset_version=17, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"])
    files = [f1]
    f2 = os.path.join(OUT_DIR, f"{name}_dynamo.onnx")
    data = f"{name}_dynamo.onnx.data"
    for p in (f2, os.path.join(OUT_DIR, data)):
        if os.path.exists(p):
            os.remove(p)
    try:
        prog = torch.onnx.export(m, (x,), dynamo=True)
        # The exporter's own layout, kept as written: the module parameters (conv weights,
        # BN-folded in place under their original names, fc) go to NAME_dynamo.onnx.data;
        # constants it created (BN-folded conv biases `*.weight_bias`, int64 axes/shapes)
        # stay inline. Forcing everything external (size_threshold=0) was tried and makes
        # onnxruntime refuse the file (it cannot shape-infer through external int64 axes).
        prog.save(f2, external_data=True)
        mp = onnx.load(f2, load_external_data=False)
        locs = {e.value for t in mp.graph.initializer for e in t.external_data
                if e.key == "location"}
        assert locs == {data}, locs
        files += [f2, os.path.join(OUT_DIR, data)]
    except Exception as e:  # noqa
        print(f"  dynamo export FAILED: {type(e).__name__}: {e}")
    # run them
    try:
        import onnxruntime as ort
        with torch.no_grad():
            ref = m(x)
        for f in files:
            if not f.endswith(".onnx"):
                continue
            so = ort.SessionOptions()
            so.intra_op_num_threads = 2
            s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
            out = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]
            e = rel_err(torch.from_numpy(out), ref)
            errs.append((name, "onnxruntime", os.path.basename(f), "", "", "vs model(x)", e))
            print(f"  onnxruntime {os.path.basename(f)}: logits rel err {e:.2e}")
            assert e < 1e-4
    except ImportError:
        print("  onnxruntime not installed: ONNX files not run")
    return files


def describe_onnx(files):
    import onnx
    for f in files:
        if not f.endswith(".onnx"):
            continue
        mp = onnx.load(f, load_external_data=False)
        ops = {}
        for n in mp.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        print(f"\n  --- {os.path.basename(f)}: opset "
              f"{[(o.domain or 'ai.onnx', o.version) for o in mp.opset_import]}, "
              f"ir {mp.ir_version}, producer {mp.producer_name} {mp.producer_version}")
        print(f"      ops: {ops}")
        print(f"      inputs {[i.name for i in mp.graph.input]} outputs "
              f"{[o.name for o in mp.graph.output]} initializers {len(mp.graph.initializer)}")
        for n in mp.graph.node:
            md = {p.key: p.value for p in n.metadata_props}
            md.pop("pkg.torch.onnx.stack_trace", None)
            print(f"      {n.op_type:22s} {n.name:40s} in={list(n.input)} out={list(n.output)}"
                  + (f" md={md}" if md else ""))


def make(net_cls, only_export=False):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(net_cls.seed)
    net = net_cls(gen)
    name = net.name
    H, W = net.input_size
    print(f"\n=== {name} input [3,{H},{W}] ===")
    inp = smooth_noise(gen, (3, H, W), low=max(4, H // 8)).contiguous()
    x = inp.unsqueeze(0)
    net.init(x)
    m = net.model
    errs = []

    # forward agreement
    with torch.no_grad():
        ref_logits = m(x)
        gt, val = net.forward(x, plain_act)
        e = rel_err(val[net.blobs[0]], ref_logits)
        gt2, val2 = net.forward(x, rule_act("guided"))
        e2 = rel_err(val2[net.blobs[0]], ref_logits)
    print(f"  functional logits vs model(x): rel err {e:.2e} (plain), {e2:.2e} (rule fn)")
    errs += [(name, "forward", "logits", "", "", "functional vs model(x)", e),
             (name, "forward", "logits", "", "", "rule-fn functional vs model(x)", e2)]
    assert e < 1e-5 and e2 < 1e-5

    tensors = {"input": inp.clone()}
    for b in net.blobs:
        a = val[b][0].contiguous().clone()
        tensors[f"blob/{b}"] = a
        print(f"  blob {b:12s} {str(list(a.shape)):14s} std {float(a.std()):8.4g} "
              f"max {float(a.max()):8.4g} >0 {float((a > 0).float().mean()):5.1%}")
    probs = F.softmax(val[net.blobs[0]], dim=1)[0].contiguous()
    tensors["probs"] = probs.clone()
    top5 = [int(i) for i in torch.argsort(probs, descending=True, stable=True)[:5]]
    print(f"  top5 {top5} probs {[round(float(probs[i]), 4) for i in top5]}")

    cases_plan, children_plan = net.plans()

    # ---- cases ----
    cases = []
    by_content = {}  # (path, rule) for root-only -> key (auto == manual there)
    nkeys = 0
    for (root, picks, modes, rules) in cases_plan:
        base = derive_path(net, inp, root, picks, "guided")
        for mode in modes:
            for rule in rules:
                path = base
                g, deg = recon(net, inp, path, rule, mode)
                if deg or float(g.abs().max()) == 0.0:
                    path = derive_path(net, inp, root, picks, rule, mode)
                    g, deg = recon(net, inp, path, rule, mode)
                # guided-neg at a root whose blob is NOT its own activation output but lies
                # right above rectifiers that see only the positive seed (a concat of ReLU
                # outputs; SqueezeNet's pooled post-ReLU logits) is exactly zero by
                # sections 2/3/8: kept as a case (shared key "recon/zero"), not an error.
                zero_ok = (rule == "guided-neg" and len(path) == 1 and not deg
                           and root in getattr(net, "guided_neg_zero_roots", ()))
                if zero_ok:
                    assert float(g.abs().max()) == 0.0, f"expected zero {path_str(path)}"
                else:
                    assert not deg and float(g.abs().max()) > 0, \
                        f"degenerate {path_str(path)} {rule} {mode}"
                ck = (path_str(path), rule) if len(path) == 1 else None
                if zero_ok:
                    key = "recon/zero"
                    shared = " (ALL ZERO, by definition: shared key recon/zero)"
                    if key not in tensors:
                        tensors[key] = g.contiguous().clone()
                        shared = " (ALL ZERO, by definition)"
                elif ck is not None and ck in by_content:
                    key = by_content[ck]
                    assert torch.equal(tensors[key], g), "root-only auto != manual"
                    shared = " (same tensor as auto)"
                elif getattr(net, "dedupe_equal", False) and any(
                        k_.startswith("recon/") and torch.equal(t_, g)
                        for k_, t_ in tensors.items()):
                    # bit-identical to an earlier case (a stem root: no rectifier between the
                    # seed and the input, so every rule gives the same gradient): share it
                    key = next(k_ for k_, t_ in tensors.items()
                               if k_.startswith("recon/") and torch.equal(t_, g))
                    if ck is not None:
                        by_content[ck] = key
                    shared = f" (bit-identical to {key}: shared)"
                else:
                    key = f"recon/{nkeys}"
                    nkeys += 1
                    tensors[key] = g.contiguous().clone()
                    if ck is not None:
                        by_content[ck] = key
                    shared = ""
                cases.append({"key": key, "path": path_str(path), "rule": rule,
                              "mult_mode": mode})
                notes = []
                if hasattr(net, "other_impl"):  # foreign: a twin for all four rules
                    o, kind = net.other_impl(inp, path, rule, mode)
                    e = rel_err(g, o)
                    errs.append((name, key, path_str(path), rule, mode, kind, e))
                    notes.append(f"{kind}: {e:.2e}")
                    assert e < 1e-5, f"cross-check failed {e}"
                    if rule == "deconv":
                        o = net.captum_deconv(inp, path, mode)
                        e = rel_err(g, o)
                        kind = "captum Deconvolution on ReLU-subclass copy"
                        errs.append((name, key, path_str(path), rule, mode, kind, e))
                        notes.append(f"{kind}: {e:.2e}")
                        assert e < 1e-5, f"cross-check failed {e}"
                elif rule != "guided-neg":
                    o = other_impl(net, inp, path, rule, mode)
                    e = rel_err(g, o)
                    kind = ("plain autograd" if rule == "gradient" else "captum") + \
                        " on distinct-ReLU copy" + ("" if len(path) == 1 else " + filter hooks")
                    errs.append((name, key, path_str(path), rule, mode, kind, e))
                    notes.append(f"{kind}: {e:.2e}")
                    assert e < 1e-5, f"cross-check failed {e}"
                if rule == "gradient" and len(path) == 1 and mode == "auto":
                    o = plain_on_model(net, inp, *path[0], Forward(net, inp, rule))
                    e = rel_err(g, o)
                    errs.append((name, key, path_str(path), rule, mode,
                                 "plain autograd on torchvision model(x)", e))
                    notes.append(f"model(x) autograd: {e:.2e}")
                    assert e < 1e-5, f"cross-check failed {e}"
                if rule in ("guided", "deconv") and len(path) == 1 and mode == "auto" \
                        and root != net.blobs[0]:
                    o = captum_on_model(net, inp, *path[0], rule, Forward(net, inp, rule))
                    if isinstance(o, str):
                        notes.append(f"[trap] captum on torchvision model: {o}")
                    else:
                        notes.append(f"[trap] captum on torchvision model: rel err "
                                     f"{rel_err(g, o):.2e} (informative, not asserted)")
                nz = float((g != 0).float().mean())
                print(f"  {key:9s} {rule:10s} {mode:6s} {path_str(path):44s} nz {nz:5.1%}"
                      f"{shared}")
                for n_ in notes:
                    print(f"        {n_}")

    # ---- children ----
    children = []
    for (root, picks, rule, mode, k) in children_plan:
        path = derive_path(net, inp, root, picks, "guided")
        fw = Forward(net, inp, rule)
        bl, ch, deg = children_of(fw, path, mode, k)
        assert not deg
        children.append({"path": path_str(path), "rule": rule, "mult_mode": mode, "k": k,
                         "children": [{"blob": bl, "channel": j, "weight": wj}
                                      for j, wj in ch]})
        print(f"  children {rule:8s} {mode:6s} {path_str(path):28s} -> "
              + ", ".join(f"{bl}:{j} ({wj:.4g})" for j, wj in ch))

    # ---- write ----
    pth = os.path.join(OUT_DIR, f"{name}.pth")
    torch.save(m.state_dict(), pth)
    onnx_files = net.export(x, errs) if hasattr(net, "export") else \
        export_onnx(net, x, name, errs)
    rpath = os.path.join(OUT_DIR, f"{name}.ref.safetensors")
    jpath = os.path.join(OUT_DIR, f"{name}.ref.json")
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, rpath)
    rel = lambda p: os.path.relpath(p, REPO)  # noqa
    with open(jpath, "w") as f:
        json.dump({"generator": versions(), "model": name, "pth": rel(pth),
                   "onnx": [rel(p) for p in onnx_files if p.endswith(".onnx")],
                   "input_size": [H, W], "blobs": net.blobs, "cases": cases,
                   "children": children, "top5": top5, **getattr(net, "extra_json", {})},
                  f, indent=1)
        f.write("\n")
    describe_onnx(onnx_files)
    return [pth] + onnx_files + [rpath, jpath], errs


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    nets = {"resnet18": ResNet18Net, "mobilenet_v2": MobileNetV2Net,
            "squeezenet1_1": SqueezeNet11Net, "googlenet": GoogLeNetNet,
            "densenet121": DenseNet121Net, "foreign": ForeignNet, "opsnet": OpsNet}
    which = sys.argv[1:] or list(nets)
    files, errs = [], []
    for w in which:
        f, e = make(nets[w])
        files += f
        errs += e
    print("\n=== cross-checks (max|ours-other| / max|other|) ===")
    for n, key, p, rule, mode, kind, err in errs:
        print(f"  {n:12s} {key:11s} {rule:10s} {mode:6s} {p:44s} {kind:50s} {err:.2e}")
    print(f"  worst: {max(x[-1] for x in errs):.2e} over {len(errs)} checks")
    print("\n=== files ===")
    total = 0
    for p in files:
        s = os.path.getsize(p)
        total += s
        print(f"  {os.path.relpath(p, REPO):45s} {s / 1024:9.1f} KiB")
    print(f"  total {total / 1024 / 1024:.2f} MiB")
    print(f"generator: {versions()}")


if __name__ == "__main__":
    main()
