"""Train and test a recbole-eimf or RecBole model, the way RecBole's run_recbole.py does.

    python run_recbole_eimf.py --dataset=ml-100k                  # EIMF: ESIM, then training
    python run_recbole_eimf.py --model=SASRec --dataset=amazon-beauty --epochs=20
    python run_recbole_eimf.py --help                             # every option, with examples

Every other ``--key=value`` is a config override (read by the Config itself).
"""

from recbole_eimf.quick_start.cli import main

if __name__ == "__main__":
    main()
