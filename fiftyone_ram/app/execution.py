"""How an operator's run is executed from the App: scheduled (delegated) only where the App can schedule it,
immediately with real progress otherwise, and never immediately for a view too large for the App server.

- Scheduling: the open-source App can only schedule an operation when ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS``
  is true in the App server's environment, and the operation then waits for a ``fiftyone delegated launch``
  process; without the setting the App shows "Schedule - NOT AVAILABLE". :func:`delegation_available` reads
  the same setting FiftyOne's own ``ExecutionOptions`` does.
- Immediate runs execute inside the App server. :func:`immediate_limit` is the largest view one may take:
  FiftyOne cancels an immediate operation after ``fo.config.operator_timeout`` seconds (600 by default), and
  the released Swin-L models tag about one image per second on a CPU, so the limit is one image per second
  of that timeout (``FIFTYONE_RAM_IMMEDIATE_LIMIT`` overrides it). Larger views are scheduled, or, where
  scheduling is unavailable, refused with the CLI command that does the same work.
- :func:`run` executes an operator's work the way its caller needs: an immediate run from the App streams its
  progress (FiftyOne's generator-operator protocol: ``ctx.ops.set_progress``, then the output), a scheduled run
  reports through ``ctx.set_progress``, a Python caller gets the result. A failure reaches the user where they
  are, as one line: in the App a notification and the form's output (FiftyOne's generator protocol has no
  error message: an exception there leaves the bar where it was); in a scheduled run, the failed operation's
  record in FiftyOne's delegated-operation store (what ``fiftyone delegated list`` / ``info`` show); for a
  Python caller, the ``ExecutionResult``'s ``error_message``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

#: Images per second a CPU is assumed to tag with a released Swin-L model (what sizes the immediate limit).
IMAGES_PER_SECOND_FLOOR = 1.0
#: A key every App request carries (its selection style; ``execute_operator`` from Python sends none): such a
#: request reads a streamed run, Python callers get the plain result instead.
APP_REQUEST_KEY = "sample_selection_style"


def delegation_available() -> bool:
    """Whether the App server this runs in can schedule (delegate) operations."""
    from fiftyone.operators.executor import ExecutionOptions

    return not ExecutionOptions().orchestrator_registration_enabled


def immediate_limit() -> int:
    """The most samples an immediate run may take (see the module docstring)."""
    override = os.environ.get("FIFTYONE_RAM_IMMEDIATE_LIMIT")
    if override:
        return max(int(override), 0)
    import fiftyone as fo

    return int((fo.config.operator_timeout or 600) * IMAGES_PER_SECOND_FLOOR)


def too_large_message(count: int, cli_command: str) -> str:
    """Why a view cannot run immediately, and the two ways to run it."""
    return (f"{count} samples are more than an immediate run can take ({immediate_limit()}, before FiftyOne's "
            f"operator timeout): schedule it (start the App with FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true and "
            f"run `fiftyone delegated launch`) or run `{cli_command}`")


def execution_options(count: int, *, prefer_delegated: bool = True):
    """The App's execution choices for a run over ``count`` samples: scheduling is the default only where
    the App can schedule; it stays allowed everywhere, since Python callers (``request_delegation=True``)
    queue operations that ``fiftyone delegated launch`` or ``DelegatedOperationService`` run without the
    App (where the App cannot schedule, its menu shows the choice as not available)."""
    from fiftyone.operators.executor import ExecutionOptions

    available = delegation_available()
    large = count > immediate_limit()
    return ExecutionOptions(allow_immediate_execution=not (large and available), allow_delegated_execution=True,
                            default_choice_to_delegated=available and (large or prefer_delegated))


def add_execution_notice(inputs, count: int, cli_command: str) -> bool:
    """Tell the user how the run will execute; returns False when it cannot run from the App at all."""
    import fiftyone.operators.types as types

    if count <= immediate_limit():
        if not delegation_available():
            inputs.view("execution_notice", types.Notice(
                label=f"Runs now, inside the App ({count} samples). To run in the background instead, start the "
                      f"App with FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true beside `fiftyone delegated launch`"))
        return True
    if delegation_available():
        inputs.view("execution_notice", types.Notice(
            label=f"{count} samples: this run is scheduled; `fiftyone delegated launch` executes it and "
                  f"`fiftyone delegated list` shows its progress"))
        return True
    inputs.view("execution_notice", types.Error(label="Too many samples to run in the App",
                                                description=too_large_message(count, cli_command)))
    return False


def streams_progress(ctx) -> bool:
    """Whether this execution reports progress to the App's form as it goes (an immediate run from the App)."""
    return not ctx.delegated and APP_REQUEST_KEY in ctx.request_params


def stream_progress(ctx, work: Callable[[Callable[[float, str], None]], Any], *, label: str,
                    finish: Callable[[Any], Iterator]) -> Iterator:
    """Run ``work(progress)`` in a thread, yielding ``ctx.ops.set_progress`` messages as it reports (the App's
    bar moves), then whatever ``finish(result)`` yields. An exception in ``work`` is raised here."""
    updates: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work(lambda fraction, text=label: updates.put((fraction, text)))
        except BaseException as exc:  # re-raised in the generator, where FiftyOne reports it
            outcome["error"] = exc
        finally:
            updates.put(None)

    thread = threading.Thread(target=run, name=f"fiftyone-ram {label}", daemon=True)
    thread.start()
    yield ctx.ops.set_progress(progress=0.0, label=label)
    while (update := updates.get()) is not None:
        fraction, text = update
        yield ctx.ops.set_progress(progress=float(fraction), label=text)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield from finish(outcome["result"])


def one_line(exc: BaseException) -> str:
    """What a user reads of an error: its one line (:func:`fiftyone_ram.errors.user_message`); for a bug its
    type and first line (the traceback is in the log of the process that ran it)."""
    from fiftyone_ram.errors import user_message

    message = user_message(exc)
    if message is not None:
        return message
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]} (the full traceback is in the log of the process that ran it)"


def run(ctx, work: Callable[[Callable[[float, str], None] | None], Any], *, label: str,
        show: Callable[[Any], Iterator] | None = None):
    """Execute ``work(progress)`` as ``ctx`` asks (see the module docstring); ``show(result)`` yields what an
    immediate App run shows when done."""
    if streams_progress(ctx):
        return _streamed(ctx, work, label=label, show=show)
    if ctx.delegated:
        try:
            return work(lambda fraction, text=label: ctx.set_progress(progress=fraction, label=text))
        except BaseException as exc:
            _record_failure(ctx, exc)
            raise
    return work(None)


def _streamed(ctx, work, *, label: str, show) -> Iterator:
    try:
        yield from stream_progress(ctx, work, label=label, finish=show or (lambda result: iter(())))
    except Exception as exc:  # never leave the App's bar where it was: say what went wrong, in one line
        logger.warning("%s failed", label, exc_info=True)
        message = one_line(exc)
        yield ctx.ops.set_progress(progress=0.0, label=f"Failed: {message}")
        yield ctx.ops.notify(message, variant="error")
        yield ctx.ops.show_output(outputs=titled(failure_output(message)).to_json(), results={"error": message})


def show_result(ctx, operator, result: Any, *, reload: bool = False):
    """What an immediate App run shows when done: the grid reloaded where it wrote samples (``reload``), then
    the operator's output for ``result`` under its title (the dialog that ``show_output`` opens shows no title of
    its own)."""
    if reload:
        yield ctx.trigger("reload_dataset")
    ctx.request_params["results"] = result
    yield ctx.ops.show_output(outputs=titled(operator.resolve_output(ctx)).to_json(), results=result)


def show_panel(ctx, operator, panel: str, state: dict[str, Any]):
    """Show a run's result in the panel ``panel`` of ``operator``'s plugin: panels of that name open in the App
    are loaded again with ``state`` (the App only brings an open panel to the front, without the state it is
    given), else the panel opens beside the grid with it."""
    open_ids = [p.component_id for p in _open_panels(ctx.spaces) if p.type == panel]
    if not open_ids:
        yield ctx.ops.open_panel(panel, layout="horizontal", state=state)
        return
    for panel_id in open_ids:  # the panel's own operator runs its on_load for that panel, as the App does
        yield ctx.trigger(f"{operator.plugin_name}/{panel}",
                          params={"__method__": "on_load", "panel_id": panel_id, "state": state})


def _open_panels(space) -> Iterator:
    """The panels in the App's layout ``space`` (``ctx.spaces``; None when the request did not send it)."""
    for child in getattr(space, "children", None) or []:
        if hasattr(child, "children"):
            yield from _open_panels(child)
        else:
            yield child


def titled(output):
    """``output`` (a Property of an Object) with its view's label as a header row first."""
    import fiftyone.operators.types as types

    label = getattr(output.view, "label", None)
    if not label:
        return output
    outputs = types.Object()
    outputs.view("title", types.Header(label=label, divider=True))
    for name, prop in output.type.properties.items():
        outputs.add_property(name, prop)
    return types.Property(outputs, view=output.view)


def failure_output(message: str):
    """The output the form shows for a failed run: its one line."""
    import fiftyone.operators.types as types

    outputs = types.Object()
    outputs.view("error", types.Error(label="The run failed", description=message))
    return types.Property(outputs, view=types.View(label="The run failed"))


def _record_failure(ctx, exc: BaseException) -> None:
    """Record a scheduled run's failure with its one line on the run's own record in FiftyOne's delegated-operation
    store, before FiftyOne records the traceback (it then keeps this record: the state is no longer running)."""
    run_doc = ctx.request_params.get("run_doc")
    if run_doc is None:
        return
    try:
        from fiftyone.operators.delegated import DelegatedOperationService
        from fiftyone.operators.executor import ExecutionResult

        message = one_line(exc)
        DelegatedOperationService().set_failed(doc_id=run_doc,
                                               result=ExecutionResult(error=message, error_message=message))
    except Exception:  # the record is FiftyOne's: if it cannot be written, FiftyOne writes its own
        logger.debug("could not record the failure's line", exc_info=True)
