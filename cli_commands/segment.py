"""Segmentation commands: segment (one image) and the eval group (COCO boxes, simulated clicks)."""

from __future__ import annotations

import click

from cli_commands.errors import UserError


def _backend_options(f):
    """--model/--checkpoint/--image-size (PyTorch reference) or --package (exported, mobile runtime)."""
    for opt in reversed([
        click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name (PyTorch path)."),
        click.option("--checkpoint", default=None, help="Weights (default: shipped student, else untrained)."),
        click.option("--image-size", type=int, default=None, help="Model input size (default: native)."),
        click.option("--package", default=None, help="Exported package dir/zip, run with the mobile runtime."),
        click.option("--allow-nonfinite-weights", "allow_nonfinite", is_flag=True,
                     help="Load a checkpoint that holds NaN/Inf values (refused by default)."),
    ]):
        f = opt(f)
    return f


def _open_backend(model_name: str, checkpoint: str | None, image_size: int | None, package: str | None,
                  allow_nonfinite: bool = False):
    """Open the predictor; says plainly on stderr when the weights are untrained."""
    from evaluation.backends import open_backend

    try:
        backend = open_backend(model_name, checkpoint, image_size, package, allow_nonfinite=allow_nonfinite)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    click.echo(f"model: {backend.description}", err=True)
    if not backend.trained:
        fix = ("it was exported without a checkpoint" if package else
               "no --checkpoint given and no trained weights shipped; pass --checkpoint for real results")
        click.echo(f"warning: this model is UNTRAINED (random weights), its masks are not meaningful: {fix}",
                   err=True)
    return backend


def _parse_points(ctx, param, values):  # noqa: ANN001, ANN202 - click callback
    from evaluation.segment import parse_point

    try:
        return [parse_point(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_box(ctx, param, value):  # noqa: ANN001, ANN202 - click callback
    from evaluation.segment import parse_box

    try:
        return None if value is None else parse_box(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("segment")
@click.option("--image", required=True, help="Input image (any format Pillow reads).")
@_backend_options
@click.option("--point", "points", multiple=True, callback=_parse_points, metavar="X,Y[,LABEL]",
              help="Prompt point in pixels; LABEL 1 positive (default) or 0 negative. Repeatable.")
@click.option("--box", callback=_parse_box, metavar="X0,Y0,X1,Y1", help="Prompt box in pixels.")
@click.option("--everything", is_flag=True, help="Segment everything (TinySAM's hierarchical mode).")
@click.option("--dense", is_flag=True, help="With --everything: SAM's dense point grid instead.")
@click.option("--points-per-side", type=click.IntRange(4, 64), default=32, show_default=True,
              help="Everything-mode grid size (4..64; the decoder runs up to its square times).")
@click.option("--multimask", is_flag=True, help="Write all 3 masks of a prompt (best first), not only the best.")
@click.option("--out", required=True, help="Output directory (mask_NNN.png, masks.json, overlay.png).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
def segment_cmd(image, model_name, checkpoint, image_size, package, allow_nonfinite, points, box, everything,  # noqa: ANN001
                dense, points_per_side, multimask, out, overwrite) -> None:
    """Segment an image from points, a box, or everything; write masks and an overlay."""
    if everything and (points or box):
        raise click.UsageError("--everything cannot be combined with --point/--box")
    if not everything and not (points or box):
        raise click.UsageError("give --point, --box or --everything")
    if dense and not everything:
        raise click.UsageError("--dense only applies with --everything")
    from evaluation import segment as seg
    from evaluation.images import load_rgb
    from evaluation.writers import check_output_dir

    inputs = (image, package, checkpoint)
    try:
        check_output_dir(out, overwrite, inputs)
        rgb = load_rgb(image)
        seg.check_prompts_in_image(points, box, rgb.shape[:2])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package, allow_nonfinite)
    try:
        if everything:
            generate = backend.make_everything("dense" if dense else "hierarchical", points_per_side)
            result = seg.segment_everything(generate, rgb)
        else:
            result = seg.segment_prompts(backend.predictor, rgb, points, box, multimask)
        meta = {"image": {"file_name": str(image)}, "model": backend.info}
        seg.write_segment(out, rgb, result, meta, overwrite, inputs)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if everything and not result.masks:
        click.echo("no mask passed the everything-mode quality filters", err=True)
    best = f", best predicted IoU {result.records[0]['predicted_iou']:.3f}" if not everything and result.records else ""
    click.echo(f"{len(result.masks)} mask(s){best} -> {out}/ (overlay.png, masks.json)")


@click.group("eval")
def eval_group() -> None:
    """Zero-shot evaluation protocols (boxes -> COCO AP, clicks -> mIoU) on either backend."""


def _progress(done: int, total: int) -> None:
    if done == total or done % 10 == 0:
        click.echo(f"  {done}/{total} images", err=True)


@eval_group.command("coco")
@click.option("--images", required=True, help="Directory with the images named in the annotations.")
@click.option("--annotations", required=True, help="COCO instances JSON (ground truth).")
@click.option("--boxes", required=True, help="Detections in COCO results format (bbox XYWH, score).")
@_backend_options
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N images only.")
@click.option("--out", required=True, help="Results JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing results file.")
def eval_coco_cmd(images, annotations, boxes, model_name, checkpoint, image_size, package, allow_nonfinite,  # noqa: ANN001
                  limit, out, overwrite) -> None:
    """Box prompts from detections -> best of 3 masks -> COCOeval segm AP (TinySAM's protocol)."""
    from evaluation import coco
    from evaluation.writers import check_output_file, write_json_atomic

    try:
        check_output_file(out, overwrite, (images, annotations, boxes, package, checkpoint))
        gt = coco.load_coco(annotations)
        dets = coco.load_detections(boxes, gt)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package, allow_nonfinite)
    try:
        results, img_ids = coco.run_box_protocol(backend.predictor, gt, dets, images, limit, _progress)
        stats = coco.evaluate_segm(gt, results, img_ids)
        write_json_atomic(out, {"protocol": "box prompts, best of 3 multimask outputs, COCOeval segm",
                                "model": backend.info, "images": len(img_ids), "detections": len(results),
                                "stats": stats}, overwrite=overwrite)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(coco.format_table(stats))


@eval_group.command("points")
@click.option("--images", required=True, help="Directory with the images named in the annotations.")
@click.option("--annotations", required=True, help="COCO instances JSON (ground truth masks).")
@_backend_options
@click.option("--max-clicks", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N images only.")
@click.option("--out", required=True, help="Results JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an existing results file.")
def eval_points_cmd(images, annotations, model_name, checkpoint, image_size, package, allow_nonfinite,  # noqa: ANN001
                    max_clicks, limit, out, overwrite) -> None:
    """Simulated clicks from GT masks (SAM's protocol) -> mIoU per number of clicks."""
    from evaluation import clicks, coco
    from evaluation.writers import check_output_file, write_json_atomic

    try:
        check_output_file(out, overwrite, (images, annotations, package, checkpoint))
        gt = coco.load_coco(annotations)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package, allow_nonfinite)
    try:
        result = clicks.run_click_protocol(backend.predictor, gt, images, max_clicks, limit, progress=_progress)
        write_json_atomic(out, {"protocol": "simulated clicks (distance transform of error regions), mIoU",
                                "model": backend.info, **result}, overwrite=overwrite)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(clicks.format_clicks_table(result))
