"""Parameter blocks that Caffe forks add to LayerParameter.

BVLC Caffe rejects these files; the forks that wrote them read them. We bind the rest of the
file and report each such block once as a warning naming the fork, so a PSPNet or SSD model is
still usable while nobody mistakes it for a BVLC net.
"""

from __future__ import annotations

KNOWN_FORK_PARAMS: dict[str, str] = {
    # SegNet, ENet, PSPNet, DeepLab
    "bn_param": "the BN layer of SegNet/ENet/PSPNet forks",
    "bw_param": "a binary-weight fork",
    "interp_param": "the Interp layer of DeepLab/PSPNet",
    "upsample_param": "the Upsample layer of SegNet/YOLOv3 forks",
    "dense_image_data_param": "the DenseImageData layer of SegNet/ENet",
    "seg_accuracy_param": "DeepLab's SegAccuracy layer",
    "mat_write_param": "DeepLab's MatWrite layer",
    "image_seg_data_param": "DeepLab's ImageSegData layer",
    "spatial_dropout_param": "ENet's spatial dropout",
    # Fast/Faster R-CNN
    "roi_pooling_param": "the ROIPooling layer of Fast/Faster R-CNN",
    "smooth_l1_loss_param": "the SmoothL1Loss layer of Fast/Faster R-CNN",
    "proposal_param": "a Faster R-CNN proposal layer",
    # SSD
    "annotated_data_param": "SSD's AnnotatedData layer",
    "prior_box_param": "SSD's PriorBox layer",
    "detection_output_param": "SSD's DetectionOutput layer",
    "detection_evaluate_param": "SSD's DetectionEvaluate layer",
    "multibox_loss_param": "SSD's MultiBoxLoss layer",
    "normalize_param": "SSD's Normalize layer",
    "permute_param": "SSD's Permute layer",
    "video_data_param": "SSD's VideoData layer",
    # YOLO forks
    "region_param": "a YOLO Region layer",
    "region_loss_param": "a YOLO RegionLoss layer",
    "reorg_param": "a YOLO Reorg layer",
    "yolo_param": "a YOLOv3 Yolo layer",
    "eval_detection_param": "a YOLO EvalDetection layer",
    # Intel Caffe, NVCaffe, others
    "quantization_param": "Intel Caffe's quantized layers",
    "resize_param": "a Resize layer of a Caffe fork",
    "shuffle_channel_param": "ShuffleNet's ShuffleChannel layer",
    "triplet_loss_param": "a TripletLoss layer of a Caffe fork",
    # Text recognition (CRNN) forks
    "ctc_loss_param": "a CTC loss layer (warp-ctc fork)",
    "continuation_indicator_param": "a ContinuationIndicator layer (CRNN fork)",
    "labelsequence_accuracy_param": "a LabelsequenceAccuracy layer (CRNN fork)",
}

#: Single fields that forks add to BVLC messages: (message, field) -> (severity, explanation).
#: Most are ignored with a warning; ``ceil_mode`` is an error because ignoring it would change
#: the pooled shapes the author asked for.
KNOWN_FORK_FIELDS: dict[tuple[str, str], tuple[str, str]] = {
    ("PoolingParameter", "ceil_mode"): (
        "error",
        "'ceil_mode' comes from Caffe forks and OpenCV, not BVLC Caffe, which rounds pooled "
        "sizes up unless told 'round_mode: FLOOR' (the same as ceil_mode: false)"),
    ("ConvolutionParameter", "mem_group_size"): (
        "warning", "'mem_group_size' comes from a memory-saving Caffe fork; ignored"),
    ("ConvolutionParameter", "conv_algorithm"): (
        "warning", "'conv_algorithm' comes from Intel Caffe; ignored"),
    ("BatchNormParameter", "filler"): (
        "warning", "'filler' comes from Intel Caffe's BatchNorm; ignored"),
    ("BatchNormParameter", "bias_filler"): (
        "warning", "'bias_filler' comes from Intel Caffe's BatchNorm; ignored"),
    ("DropoutParameter", "scale_train"): (
        "warning", "'scale_train' comes from Fast R-CNN's Caffe fork (unscaled dropout while "
                   "training); ignored"),
    ("ImageDataParameter", "label_type"): (
        "warning", "'label_type' comes from DeepLab's Caffe fork; ignored"),
    ("LossParameter", "weight_by_label_freqs"): (
        "warning", "'weight_by_label_freqs' comes from SegNet/ENet's Caffe fork; ignored"),
    ("LossParameter", "class_weighting"): (
        "warning", "'class_weighting' comes from SegNet/ENet's Caffe fork; ignored"),
    ("SolverParameter", "warmup_iter"): (
        "warning", "'warmup_iter' comes from Intel Caffe's solver; ignored"),
    ("SolverParameter", "warmup_start_lr"): (
        "warning", "'warmup_start_lr' comes from Intel Caffe's solver; ignored"),
}

#: Layer types that Caffe forks add (BVLC Caffe aborts on them: "Unknown layer type").
KNOWN_FORK_LAYER_TYPES: dict[str, str] = {
    "BN": "the SegNet/ENet/PSPNet Caffe forks",
    "Interp": "the DeepLab/PSPNet Caffe forks",
    "Upsample": "the SegNet/YOLOv3 Caffe forks",
    "DenseImageData": "the SegNet/ENet Caffe forks",
    "ImageSegData": "DeepLab's Caffe fork",
    "SegAccuracy": "DeepLab's Caffe fork",
    "MatWrite": "DeepLab's Caffe fork",
    "ROIPooling": "the Fast/Faster R-CNN Caffe fork",
    "SmoothL1Loss": "the Fast/Faster R-CNN Caffe fork",
    "AnnotatedData": "SSD's Caffe fork",
    "PriorBox": "SSD's Caffe fork",
    "DetectionOutput": "SSD's Caffe fork",
    "DetectionEvaluate": "SSD's Caffe fork",
    "MultiBoxLoss": "SSD's Caffe fork",
    "Normalize": "SSD's Caffe fork",
    "Permute": "SSD's Caffe fork",
    "Reorg": "the YOLOv2 Caffe forks",
    "Region": "the YOLOv2 Caffe forks",
    "RegionLoss": "the YOLOv2 Caffe forks",
    "EvalDetection": "the YOLO Caffe forks",
    "Yolo": "the YOLOv3 Caffe forks",
    "Mish": "the YOLOv4 Caffe forks",
    "ShuffleChannel": "ShuffleNet's Caffe fork",
    "ConvolutionDepthwise": "MobileNet Caffe forks (depthwise convolution)",
    "DepthwiseConvolution": "MobileNet Caffe forks (depthwise convolution)",
    "CtcLoss": "a warp-ctc Caffe fork (CRNN)",
    "ContinuationIndicator": "a CRNN Caffe fork",
    "LabelsequenceAccuracy": "a CRNN Caffe fork",
    "TripletLoss": "a face-recognition Caffe fork",
    "Resize": "Intel Caffe / SSD forks",
}
