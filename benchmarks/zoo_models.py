"""The committed list of public models `bench_zoo.py` profiles. One entry per model: the target as `dscalc profile`
takes it, its input shapes, its family, and the runner that profiles it (`torch`; `onnx`: a torchvision model
exported to ONNX and profiled from the file; `keras`: a keras.applications model saved to .keras; `tflite`: a
torchvision model converted with litert-torch, float32 or int8; `hf`: a transformers model type's default
configuration - each in bench_zoo.RUNNERS)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    target: str  # as `dscalc profile` takes it: torchvision:NAME, timm:NAME, a file
    inputs: tuple[tuple[int, ...], ...] | None  # None: the model's default input (timm's pretrained_cfg)
    family: str
    runner: str = "torch"
    kwargs: dict = field(default_factory=dict)


IMAGE = ((1, 3, 224, 224),)
CLIP = ((1, 3, 16, 112, 112),)
CLIP224 = ((1, 3, 16, 224, 224),)
DETECT = ((3, 320, 320),)  # one image (the models resize it to their own size)

TORCHVISION_CLASSIFICATION = [
    "alexnet", "vgg11", "vgg16_bn", "resnet18", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2",
    "squeezenet1_0", "squeezenet1_1", "densenet121", "densenet201", "googlenet", "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5", "mnasnet1_0",
    "efficientnet_b0", "efficientnet_b3", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "regnet_y_1_6gf",
    "convnext_tiny", "vit_b_16", "vit_b_32", "swin_t", "swin_v2_t", "maxvit_t",
]

TORCHVISION_DETECTION = [
    "fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
]

TORCHVISION_SEGMENTATION = ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large",
                            "lraspp_mobilenet_v3_large"]

TIMM = [
    "coat_lite_tiny", "sequencer2d_s", "deit_tiny_patch16_224", "vit_tiny_patch16_224", "convnext_atto",
    "efficientnet_b0", "mobilenetv3_small_100", "resnet18", "levit_128s", "mixer_b16_224", "poolformer_s12",
    "regnety_002", "ghostnet_100", "mobilevit_xs", "edgenext_xx_small", "efficientformer_l1", "rexnet_100",
    "lcnet_050", "tinynet_a", "hrnet_w18_small",
]

#: torchvision models converted with litert-torch (float32, and int8 post-training quantized)
TFLITE_FLOAT = ["mobilenet_v2", "mobilenet_v3_small", "resnet18", "squeezenet1_1", "efficientnet_b0",
                "shufflenet_v2_x0_5"]
TFLITE_INT8 = ["mobilenet_v2", "resnet18", "squeezenet1_1"]

#: Hugging Face model types built from their default configuration (no weights), at the inputs it implies
HF = [("mobilenet_v2", "HF vision"), ("mobilenet_v1", "HF vision"), ("convnext", "HF vision"), ("vit", "HF vision"),
      ("resnet", "HF vision"), ("efficientnet", "HF vision"), ("swin", "HF vision"), ("deit", "HF vision"),
      ("bert", "HF text"), ("distilbert", "HF text"), ("roberta", "HF text"), ("wav2vec2", "HF audio")]

MODELS: list[Entry] = [
    *(Entry(f"torchvision:{n}", IMAGE, "classification") for n in TORCHVISION_CLASSIFICATION),
    Entry("torchvision:inception_v3", ((1, 3, 299, 299),), "classification"),
    *(Entry(f"torchvision:{n}", DETECT, "detection") for n in TORCHVISION_DETECTION),
    *(Entry(f"torchvision:{n}", IMAGE, "segmentation") for n in TORCHVISION_SEGMENTATION),
    Entry("torchvision:r3d_18", CLIP, "video"),
    Entry("torchvision:mc3_18", CLIP, "video"),
    Entry("torchvision:r2plus1d_18", CLIP, "video"),
    Entry("torchvision:s3d", CLIP224, "video"),
    Entry("torchvision:mvit_v1_b", CLIP224, "video"),
    Entry("torchvision:mvit_v2_s", CLIP224, "video"),
    Entry("torchvision:swin3d_t", CLIP224, "video"),
    Entry("torchvision:raft_small", ((1, 3, 256, 256), (1, 3, 256, 256)), "optical flow"),
    Entry("torchvision:raft_large", ((1, 3, 256, 256), (1, 3, 256, 256)), "optical flow"),
    *(Entry(f"timm:{n}", None, "timm") for n in TIMM),
    *(Entry(f"onnx:torchvision:{n}", IMAGE, "ONNX export", "onnx")
      for n in ("resnet18", "mobilenet_v2", "squeezenet1_1", "efficientnet_b0")),
    *(Entry(f"keras:{n}", ((1, 224, 224, 3),), "Keras", "keras") for n in ("MobileNet", "MobileNetV2", "ResNet50")),
    *(Entry(f"tflite:torchvision:{n}", IMAGE, "TFLite float32", "tflite") for n in TFLITE_FLOAT),
    *(Entry(f"tflite-int8:torchvision:{n}", IMAGE, "TFLite int8", "tflite") for n in TFLITE_INT8),
    *(Entry(f"hf:{n}", None, family, "hf") for n, family in HF),
]
