"""transformers' `TrainerCallback`s for `DistillationTrainer`: which stock ones work, and the handler that calls them.

`on_train_begin`, `on_step_begin`, `on_step_end`, `on_log`, `on_evaluate` and `on_train_end` are called, and
`control.should_training_stop` is honoured. `on_step_end` also receives `images`, the synthetic images after that
step. Stock callbacks that only read the logs (`PrinterCallback`, `ProgressCallback`) work; those that need
`TrainingArguments` (the reporting integrations such as `TensorBoardCallback`, `DefaultFlowCallback`,
`EarlyStoppingCallback`) are refused: use `--report_to` for trackers.
"""

from __future__ import annotations

import logging

from transformers import DefaultFlowCallback, EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import CallbackHandler
from transformers.utils import logging as transformers_logging

REFUSED_CALLBACKS = (DefaultFlowCallback, EarlyStoppingCallback)  # they drive the Trainer's flow from TrainingArguments


def make_callback_handler(callbacks: list[TrainerCallback | type[TrainerCallback]]) -> CallbackHandler:
    """transformers' `CallbackHandler` for `callbacks`; raise for stock callbacks that need `TrainingArguments`."""
    for callback in callbacks:
        cls = callback if isinstance(callback, type) else type(callback)
        if issubclass(cls, REFUSED_CALLBACKS) or cls.__module__.startswith("transformers.integrations"):
            raise ValueError(f"{cls.__name__} works with transformers' Trainer only (it reads TrainingArguments); "
                             f"DistillationTrainer reports to trackers with --report_to (e.g. 'tensorboard' or 'wandb').")
    # The handler warns when DefaultFlowCallback is missing; that callback schedules the Trainer's own logging and
    # saving, which DistillationTrainer does itself. (model, processing_class/tokenizer, optimizer, lr_scheduler: none.)
    handler_logger = transformers_logging.get_logger("transformers.trainer_callback")
    handler_logger.addFilter(_no_default_flow_warning)
    try:
        return CallbackHandler(callbacks, None, None, None, None)
    finally:
        handler_logger.removeFilter(_no_default_flow_warning)


def _no_default_flow_warning(record: logging.LogRecord) -> bool:
    return "DefaultFlowCallback" not in record.getMessage()
