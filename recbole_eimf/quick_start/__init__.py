from recbole_eimf.quick_start.quick_start import format_results, load_data_and_model, run_recbole_eimf

__all__ = ["run_recbole_eimf", "load_data_and_model", "format_results"]
