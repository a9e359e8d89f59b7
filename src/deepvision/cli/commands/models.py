"""deepvision models"""

from __future__ import annotations

import argparse
from typing import Any

ORDER = 40

_SHOW_HELP = """\
Print NAME's layers in forward order, like Keras' summary(): layer, type, output shape, parameters
and multiply-adds, then the totals (trainable and frozen parameters, BN running statistics, size).
Nothing is computed: the model runs on PyTorch's meta device, so even VGG16 takes milliseconds.

examples:
  deepvision models show squeezenet_ref
  deepvision models show resnet_ref --set stages=[2,2,2,2] --reference
  deepvision models show tv:efficientnet_b0 --classes 10 --input 1x128x128
  deepvision models show googlenet_ref --depth 2 --diagram googlenet.png
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model layer by layer",
                       description="List every registered model with its input size and trainable parameter "
                                   "count (modern and reference profiles). torchvision models are named tv:NAME, "
                                   "timm models timm:NAME (when timm is installed).")
    p.add_argument("--tv", action="store_true", help="also list every torchvision classification model")
    p.add_argument("--filter", metavar="TEXT", help="only models whose name contains TEXT")
    p.set_defaults(func=run_list)
    actions = p.add_subparsers(dest="models_command", metavar="<subcommand>")
    show = actions.add_parser("show", help="layer-by-layer table of one model (and its diagram)",
                              description=_SHOW_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("name", help="model name, e.g. vgg16_ref or tv:resnet50")
    show.add_argument("--input", metavar="CxHxW", help="input shape: CxHxW, HxW or a side (default: the model's)")
    show.add_argument("--classes", type=int, metavar="N", help="number of classes (default: the model's)")
    show.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                      help="builder option, value in YAML (e.g. --set activation=relu); repeatable")
    show.add_argument("--reference", action="store_true", help="use the reference profile's hidden defaults")
    show.add_argument("--depth", type=int, metavar="D", help="one row per module D levels deep instead of per layer")
    show.add_argument("--diagram", metavar="FILE", help="also draw the network to FILE (.png, .svg or .pdf)")
    show.set_defaults(func=run_show)


def _console():
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 80, highlight=False)


def _meta_model(name: str, classes: int | None = None, channels: int | None = None, **options: Any):
    """Build on the meta device: shapes and counts without memory or initialisation time."""
    from deepvision.models import create_model
    from deepvision.models.registry import refuse_own_settings
    from deepvision.models.shapes import meta_init

    refuse_own_settings(name, options)
    with meta_init():
        return create_model(name, classes, channels, **options)


def run_list(args: argparse.Namespace) -> int:
    import shutil
    import textwrap

    from deepvision.errors import UserError
    from deepvision.models import get_model_spec, list_models
    from deepvision.models.summary import count_parameters

    names = list_models()
    if args.tv:
        from deepvision.models.torchvision_models import torchvision_names

        names += [f"tv:{n}" for n in torchvision_names()]
    if args.filter:
        names = [n for n in names if args.filter.lower() in n.lower()]
        if not names:
            hint = "" if args.tv else " (add --tv for torchvision models)"
            raise UserError(f"no model name contains '{args.filter}'{hint}")
    width = min(shutil.get_terminal_size().columns, 80)
    lines = ["deepvision models  (input CxHxW, default classes, trainable parameters)", ""]
    for name in names:
        spec = get_model_spec(name)
        modern = count_parameters(_meta_model(name))[1]
        reference = count_parameters(_meta_model(name, reference=True))[1] if spec.accepts_reference else None
        facts = (f"{'x'.join(str(v) for v in spec.input_size)}, {spec.num_classes} classes, {modern:,} parameters"
                 + (f" (reference profile {reference:,})" if reference is not None and reference != modern else ""))
        lines += [name, *textwrap.wrap(facts, width, initial_indent="  ", subsequent_indent="  "),
                  *textwrap.wrap(spec.description, width, initial_indent="  ", subsequent_indent="  ")]
    lines += ["", *textwrap.wrap("torchvision: `deepvision models --tv` lists tv:NAME (the detectors answer to "
                                 "tv:NAME too); timm models are timm:NAME when timm is installed. Details: "
                                 "`deepvision models show NAME`.", width)]
    print("\n".join(lines))
    return 0


def parse_input(text: str | None, default: tuple[int, int, int], option: str = "--input") -> tuple[int, int, int]:
    """'3x224x224', '224x224' (channels from `default`) or '224' -> (C, H, W); errors name `option`."""
    from deepvision.errors import UserError

    if not text:
        return default
    try:
        parts = [int(v) for v in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [default[0], parts[0], parts[0]]
    elif len(parts) == 2:
        parts = [default[0], *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise UserError(f"{option} must look like 3x224x224 (CxHxW), 224x224 or 224, got '{text}'")
    from deepvision.config.schema import MAX_SIDE

    if parts[0] > 1024 or max(parts[1:]) > MAX_SIDE:
        raise UserError(f"{option} {text}: channels must be in [1, 1024] and sides in [1, {MAX_SIDE}]")
    return parts[0], parts[1], parts[2]


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs with YAML values ('stages=[2,2,2,2]', 'reference=true')."""
    from deepvision.config.io import load_yaml_text  # the config's YAML: 1e300 is a number, as in train --set
    from deepvision.errors import UserError
    from deepvision.safeload import ParseError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            options[key.strip()] = load_yaml_text(value, f"--set {key.strip()}") if value.strip() else None
        except ParseError:
            options[key.strip()] = value
    return options


def run_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    from deepvision.cli.output import shown
    from deepvision.config.schema import MAX_CLASSES
    from deepvision.errors import UserError
    from deepvision.models import get_model_spec
    from deepvision.models.summary import check_input_size, format_macs, format_shape, summarize

    if args.classes is not None and not 1 <= args.classes <= MAX_CLASSES:
        raise UserError(f"--classes must be in [1, {MAX_CLASSES:,}], got {args.classes}")
    spec = get_model_spec(args.name)
    shape = parse_input(args.input, spec.input_size)
    if args.diagram:
        from deepvision.models.diagram import check_diagram_path

        check_diagram_path(args.diagram)
    options = parse_options(args.options)
    if "input_size" in options:  # the shown input and the one the model is built for are one setting
        raise UserError(f"--set input_size: give the input as --input (CxHxW, HxW or a side, e.g. --input "
                        f"{'x'.join(map(str, spec.input_size))}); the model is built for the input it shows")
    if args.reference:
        options["reference"] = True
    options_text = shown(", ".join(f"{k}={v}" for k, v in options.items() if k != "reference"))
    if "input_size" in spec.options and "input_size" not in options:
        options["input_size"] = shape[1] if shape[1] == shape[2] else (shape[1], shape[2])
    model = _meta_model(args.name, args.classes, shape[0], **options)
    check_input_size(model, shape, args.name)
    summary = summarize(model, shape, args.name, depth=args.depth)

    profile = "reference" if options.get("reference") else "modern"
    title = f"{escape(args.name)} ({profile} profile{', ' + escape(options_text) if options_text else ''})"
    from rich import box

    # no cell borders: the table is as narrow as Keras' summary and fits 80 columns
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
    for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("params", "right"),
                            ("mult-adds", "right")):
        table.add_column(column, justify=justify, overflow="fold", no_wrap=column != "layer")
    for row in summary.rows:
        params = f"{row.params:,}" + (" (frozen)" if row.params and row.trainable == 0 else "")
        if 0 < row.trainable < row.params:
            params = f"{row.params:,} ({row.params - row.trainable:,} frozen)"
        table.add_row(escape(shown(row.name)), escape(shown(row.kind)), format_shape(row.output_shape), params,
                      format_macs(row.macs) if row.macs else "")
    console = _console()
    console.print(table)
    console.print(f"input:                {format_shape(summary.input_shape)}\n"
                  f"output:               {format_shape(summary.output_shape)}\n"
                  f"total params:         {summary.total_params:,}\n"
                  f"trainable params:     {summary.trainable_params:,}\n"
                  f"non-trainable params: {summary.non_trainable_params:,}\n"
                  f"buffers:              {summary.buffer_values:,} (BN running statistics)\n"
                  f"multiply-adds:        {format_macs(summary.macs)} ({summary.macs:,})\n"
                  f"size:                 {summary.size_bytes / 1e6:,.2f} MB (parameters and buffers)", soft_wrap=True)
    if args.diagram:
        from deepvision.models.diagram import write_diagram

        path = write_diagram(model, shape, Path(args.diagram), args.name)
        console.print(f"diagram written to {escape(shown(path))}", soft_wrap=True)
    return 0
