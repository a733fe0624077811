from recbole_eimf.quick_start.quick_start import (
    build_model,
    format_results,
    load_data_and_model,
    prepare_run,
    run_esim_stage,
    run_recbole_eimf,
    start_run,
    train_and_test,
)

__all__ = [
    "run_recbole_eimf",
    "load_data_and_model",
    "format_results",
    "build_model",
    "prepare_run",
    "start_run",
    "train_and_test",
    "run_esim_stage",
]
