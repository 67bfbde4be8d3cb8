"""tinysam-mobile command line: one thin click group over the packages.

Each command parses its options, calls one function, and prints. The commands live in
`cli_commands/` (one module per area); heavy packages (torch, converters) are imported inside the
commands so `--help` stays fast.
"""

from __future__ import annotations

import click

from cli_commands.bench import bench_cmd
from cli_commands.convert import convert_cmd, demo_cmd, info_cmd, verify_cmd
from cli_commands.errors import OneLineErrorGroup, UserError
from cli_commands.segment import eval_group, segment_cmd
from cli_commands.train import calibrate_iou_head_cmd, distill_cmd, minisa_cmd, quantize_cmd

__all__ = ["UserError", "main"]


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tinysam-mobile: take an efficient Segment Anything model from PyTorch to phones."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in (minisa_cmd, quantize_cmd, bench_cmd, demo_cmd, convert_cmd, verify_cmd, segment_cmd, eval_group,
                 distill_cmd, calibrate_iou_head_cmd, info_cmd):
    main.add_command(_command)


if __name__ == "__main__":
    from cli_commands.stderr_filter import filter_native_stderr

    filter_native_stderr()
    main()
