"""Command line: ``python -m hashrec_utils {data,train} ...``.

``data NAME``   print a dataset's statistics (users, items, interactions,
                density, degree percentiles).
``report``      build the PDF report from results/<profile>/ (Typst).
``collect``     record finished run folders in results/<profile>/runs.json (the report
                quotes them: the ``full`` profile's Gowalla runs).
``compare``     notebook 07's table on a published split (``--rows``/``--seeds``/``--bits``: a part
                of it; what is left is reported as pending; ``--reuse-committed``: runs without a
                folder here are read from the committed results where they hold them).
``teacher-size`` the comparison's LightGCN size, chosen on the validation carve-out (results/<profile>/
                teacher_size_<dataset>.json; sizes tried in order while validation improves).
``distill ...`` a model's own user/item embeddings -> K-bit item codes, a saved searcher and a report
                (held-out users: share of the model's top-20 found, throughput against exact search).
``train ...``   train LightGCN / a hash model into an output folder; the same
                folder again resumes, or says the run is complete.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import PROFILES

# data.FORMATS with "auto", spelled out so that the CLI starts without importing pandas (a test checks they agree)
FORMAT_CHOICES = ("auto", "lightgcn", "edges", "grouplens", "netflix")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hashrec_utils", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="print a dataset's statistics")
    data.add_argument("name", help="ml-1m, gowalla, yelp2018, amazon-book, netflix, synthetic, or a folder")
    data.add_argument("--root", default=None, help="folder holding datasets (default: data/)")
    data.add_argument("--valid-fraction", type=float, default=0.0)
    data.add_argument("--json", action="store_true", help="print JSON instead of a table")
    data.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help="split files' format (default: detect)")

    report = sub.add_parser("report", help="build the Typst report from results/<profile>/")
    report.add_argument("--profile", default="default", choices=PROFILES)
    report.add_argument("--output", default=None, help="PDF path (default: report/report.pdf)")

    collect = sub.add_parser("collect", help="record finished run folders in results/<profile>/runs.json")
    collect.add_argument("runs", nargs="+", metavar="DIR", help="run folders (config.json + metrics.json)")
    collect.add_argument("--profile", default="full", choices=PROFILES)

    tune = sub.add_parser("tune", help="the hashing table's validation grid: results/<profile>/tuning.*, winners for every run")
    tune.add_argument("--profile", default="default", choices=PROFILES)
    tune.add_argument("--rows", nargs="*", default=None, metavar="ROW", help="table rows to tune (default: all)")
    tune.add_argument("--lr-factors", nargs="+", type=float, default=None, metavar="F",
                      help="learning-rate factors, the base 1 first (default: the profile's grid)")
    tune.add_argument("--length-factors", nargs="+", type=float, default=None, metavar="F",
                      help="schedule-length factors, the base 1 first (default: the profile's grid)")
    tune.add_argument("--no-own", action="store_true", help="skip step 2 (each row's own schedule parameter)")
    tune.add_argument("--max-length-factor", type=float, default=None, metavar="F",
                      help="step 3: double a winner at the grid's longest schedule while validation improves, up to F "
                           "(default: the profile's grid; full: 4)")
    tune.add_argument("--final-length-factor", type=float, default=None, metavar="F",
                      help="step 5: after the levers, double a winner still learning at its schedule's end while "
                           "validation improves, up to F (default: the profile's grid; full: 8)")
    tune.add_argument("--dataset", default=None, help="the catalogue whose validation split scores the grid (default: the profile's first)")
    tune.add_argument("--valid-fraction", type=float, default=None, metavar="F",
                      help="carve this share of train as validation (a published split has none; notebook 07 uses 0.1)")
    tune.add_argument("--table-teacher", action="store_true",
                      help="every point from the comparison's teacher (ComparisonStage.teacher); a row tuned on "
                           "another teacher keeps its winner unless its validation drops there (then only step 5)")
    tune.add_argument("--reuse-committed", action="store_true",
                      help="read a grid point whose run folder is absent from results/<profile>/tuning.csv where it "
                           "holds it (a fresh clone: only the points the record lacks train)")

    compare = sub.add_parser("compare", help="notebook 07's table on a published split (results/<profile>/comparison_*)")
    compare.add_argument("--profile", default="full", choices=PROFILES)
    compare.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                         help="table rows to run (default: the profile's; others are reported as pending)")
    compare.add_argument("--seeds", nargs="+", type=int, default=None, metavar="S", help="seeds of the top rows")
    compare.add_argument("--top-rows", nargs="*", default=None, metavar="ROW", help="rows run over every seed")
    compare.add_argument("--bits", nargs="+", type=int, default=None, metavar="K", help="the bits sweep's code lengths")
    compare.add_argument("--refit", choices=("none", "best", "top"), default=None,
                         help="retrain on all of train, every choice fixed on the carve-out: none, hashrec's best row "
                              "(and the teacher) or every row run over every seed (default: the profile's)")
    compare.add_argument("--refit-seeds", nargs="+", type=int, default=None, metavar="S",
                         help="refit only these seeds (the others are listed as pending)")
    compare.add_argument("--reuse-committed", action="store_true",
                         help="read a run whose folder is absent from results/<profile>/comparison_* where they hold it "
                              "(a fresh clone: only runs whose settings changed train)")
    compare.add_argument("--asymmetric", action="store_true",
                         help="only the asymmetric rows: the best row's runs scored asymmetrically and signswish_asym "
                              "at its settings, every seed (results/<profile>/comparison_asymmetric*)")

    size = sub.add_parser("teacher-size", help="the comparison's teacher (its size, then its schedule) chosen on "
                                               "validation (results/<profile>/teacher_size_<dataset>.json)")
    size.add_argument("--profile", default="full", choices=PROFILES)
    size.add_argument("--dataset", default=None, help="the comparison's catalogue (default: its first)")
    size.add_argument("--dims", nargs="+", type=int, default=None, metavar="D",
                      help="the sizes to try, in order (default: the profile's teacher_dims; the rest stay pending)")
    size.add_argument("--no-schedule", action="store_true",
                      help="choose the size only: the chosen size's longer schedule stays pending")
    size.add_argument("--reuse-committed", action="store_true",
                      help="read a size whose run folder is absent from the committed record where it holds it")

    trade = sub.add_parser("tradeoff", help="notebook 05's speed study of some of a profile's datasets "
                                            "(results/<profile>/tradeoff_*, the sampled catalogues beyond ml-1m)")
    trade.add_argument("--profile", default="full", choices=PROFILES)
    trade.add_argument("--dataset", nargs="+", default=None, metavar="NAME",
                       help="datasets of the profile's tradeoff_datasets (default: all of them)")

    train = sub.add_parser("train", help="train a model into --out (resumes if --out has a checkpoint)")
    train.add_argument("--dataset", required=True, help="dataset name or folder")
    train.add_argument("--model", default="lightgcn", help="lightgcn, graphsage or hashgnn")
    train.add_argument("--hash", default=None, dest="hash_method", help="hash estimator (e.g. guided_ste); none = continuous")
    train.add_argument("--bits", type=int, default=64)
    train.add_argument("--profile", default="default", choices=PROFILES)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="run folder: config.json, history.csv, metrics.json, checkpoint")
    train.add_argument("--format", default=None, choices=FORMAT_CHOICES, dest="data_format",
                       help="split files' format of a folder --dataset (default: detect)")
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    train.add_argument("--init", default=None, metavar="DIR",
                       help="hash runs: the LightGCN run folder whose embeddings seed the code table "
                            "(default: the profile's LightGCN run, runs/<profile>/lightgcn_<dataset>_L3_s0, trained if absent)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a TrainConfig field, e.g. --set epochs=10 (repeatable)")
    train.add_argument("--retrain", action="store_true",
                       help="--out was trained by other component versions (its config.json's identity differs): "
                            "move it aside to <out>.stale and train again")

    distill = sub.add_parser("distill", help="your model's embeddings -> K-bit item codes and a saved searcher")
    distill.add_argument("--embeddings", required=True, metavar="FILE.npz",
                         help="an .npz holding user (n_users x d) and item (n_items x d): inner product = score")
    distill.add_argument("--bits", type=int, default=64)
    distill.add_argument("--out", required=True, metavar="DIR", help="folder for the searcher and report.json")
    distill.add_argument("--interactions", default=None, metavar="PATH",
                         help="edge list 'user item ...' of seen items (0-based rows of the matrices): excluded "
                              "from search and from the distillation targets")
    distill.add_argument("--test", default=None, metavar="PATH",
                         help="edge list of held-out items (same ids): the report's recall@20 beside the model's own")
    distill.add_argument("--keep-float", action="store_true",
                         help="store the item embeddings too (hierarchical search re-ranks with them)")
    distill.add_argument("--profile", default="default", choices=PROFILES)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a distillation setting (DistillSettings), e.g. --set epochs=10")

    study = sub.add_parser("study", help="LightGCN + the best hash recipe on your folder: tables, figures, PDF report")
    study.add_argument("--dataset", required=True, metavar="FOLDER", help="folder holding train and test files")
    study.add_argument("--profile", default="default", choices=PROFILES)
    study.add_argument("--format", default="auto", choices=("auto", "lightgcn", "edges", "grouplens", "netflix"))
    study.add_argument("--bits", type=int, default=64)
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a TrainConfig field of every run, e.g. --set epochs=10 (repeatable)")
    return parser


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects KEY=VALUE; got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _print_stats(stats: dict) -> None:
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        if isinstance(value, float) and key == "density":
            text = f"{value:.6f}"
        elif isinstance(value, float):
            text = f"{value:,.1f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        print(f"{key:<{width}}  {text}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "data":
        from .data import dataset_stats, load_dataset

        stats = dataset_stats(load_dataset(args.name, args.root, valid_fraction=args.valid_fraction, format=args.format))
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            _print_stats(stats)
        return 0
    if args.command == "report":
        from .report import build_report

        print(build_report(args.profile, args.output))
        return 0
    if args.command == "collect":
        from .experiments import collect_runs

        for row in collect_runs(args.profile, args.runs):
            print(f"{row['run']}: {row['dataset']} {row['model']}{'+' + row['hash_method'] if row['hash_method'] else ''}"
                  f" {row['epochs']} epochs, {row['train_seconds'] or 0:,.0f} s")
        return 0
    if args.command == "tune":
        from dataclasses import replace

        from .experiments import rows as _rows
        from .experiments.comparison import COMPARISON
        from .experiments.tuning import TUNING_GRID, teacher_label, tune

        grid = TUNING_GRID[args.profile]
        grid = replace(grid, **{k: tuple(v) for k, v in (("lr_factors", args.lr_factors),
                                                           ("length_factors", args.length_factors)) if v},
                       own=grid.own and not args.no_own,
                       max_length_factor=args.max_length_factor or grid.max_length_factor,
                       final_length_factor=args.final_length_factor or grid.final_length_factor)
        frame = tune(args.profile, tuple(args.rows) if args.rows else None, grid=grid, dataset=args.dataset,
                     valid_fraction=args.valid_fraction, reuse_committed=args.reuse_committed,
                     teacher=COMPARISON[args.profile].teacher if args.table_teacher else None)
        if frame.attrs.get("reused_committed"):
            print(f"{len(frame.attrs['reused_committed'])} grid points read from the committed record (no run folder)")
        here = frame["teacher"].astype(str) == teacher_label(COMPARISON[args.profile].teacher if args.table_teacher
                                                             else None)
        for row in frame[frame.winner & here].to_dict("records"):
            print(f"{row['row']}: lr x{row['lr_factor']:g}, length x{row['length_factor']:g},"
                  f" {row['estimator'] or 'its own schedule as set'}{', ' + row['objective'] if row.get('objective') else ''}: valid Hamming recall@20 {row['valid_recall@20']:.4f}")
        print(f"winners: {_rows.TUNED_FILE}")
        return 0
    if args.command == "compare":
        from dataclasses import replace

        from .experiments.comparison import COMPARISON, comparison_stage

        planned = COMPARISON[args.profile]
        if not planned.datasets:
            raise ValueError(f"the {args.profile} profile trains no comparison (it shows the {planned.source} profile's)")
        if args.asymmetric:
            from .experiments.asymmetric_rows import asymmetric_rows

            for dataset in planned.datasets:
                table = asymmetric_rows(args.profile, dataset, tuple(args.seeds) if args.seeds else None)["table"]
                for _, r in table.iterrows():
                    spread = f" ± {r['recall@50_std']:.4f}" if r["seeds"] > 1 else ""
                    print(f"{dataset}: {r['row']} [{r['search']}] recall@50 {r['recall@50_mean']:.4f}"
                          f"{spread} (n = {int(r['seeds'])})")
            return 0
        unknown = sorted(set(args.rows or ()) - set(planned.rows))
        if unknown:
            raise ValueError(f"--rows: not rows of the {args.profile} comparison: {', '.join(unknown)} "
                             f"(its rows: {', '.join(planned.rows)})")
        stage = replace(planned, **{k: tuple(v) for k, v in (("rows", args.rows), ("seeds", args.seeds),
                                                              ("top_rows", args.top_rows), ("bits", args.bits))
                                    if v is not None})
        if args.refit is not None:
            stage = replace(stage, refit=args.refit)
        if args.refit_seeds is not None:
            stage = replace(stage, refit_seeds=tuple(args.refit_seeds))
        out = comparison_stage(args.profile, stage, reuse_committed=args.reuse_committed)
        for dataset, summary in out["summary"].items():
            print(f"{dataset}: best row {summary['best_row']} (valid Hamming recall@50 "
                  f"{summary['best_valid_hamming_recall@50']:.4f}); test Hamming recall@50 "
                  f"{summary['best_hamming_recall@50']:.4f}, hierarchical {summary['best_hierarchical_recall@50']:.4f}")
            if summary.get("refit"):
                r = summary["refit"]
                print(f"{dataset}: refit on all of train: teacher recall@20 {r['teacher']['recall@20']:.4f}; best row "
                      f"Hamming recall@50 {r['best_hamming_recall@50']:.4f} (n = {r['seeds']}), recall@100 "
                      f"{r['best_hamming_recall@100']:.4f}, ndcg@50 {r['best_hamming_ndcg@50']:.4f}, ndcg@100 "
                      f"{r['best_hamming_ndcg@100']:.4f}")
            if summary.get("reused_committed"):
                print(f"{dataset}: {len(summary['reused_committed'])} runs read from the committed record (no run folder)")
        return 0
    if args.command == "teacher-size":
        from .experiments.comparison import COMPARISON
        from .experiments.teacher_size import teacher_size

        planned = COMPARISON[args.profile]
        if not planned.datasets:
            raise ValueError(f"the {args.profile} profile trains no comparison, so it has no teacher to size")
        record = teacher_size(args.profile, args.dataset or planned.datasets[0],
                              dims=tuple(args.dims) if args.dims else None, schedule=not args.no_schedule,
                              reuse_committed=args.reuse_committed)
        for e in record["sizes"] + record["schedules"]:
            print(f"d = {e['dim']}: valid recall@20 {e['valid_recall@20']:.4f} (test {e['test_recall@20']:.4f}), "
                  f"kept epoch {e['kept_epoch']} of {e['epochs']}, {e['seconds_per_epoch'] or 0:.1f} s an epoch ({e['run']})")
        todo = [f"d = {d}" for d in record["pending"]] + [f"{e} epochs" for e in record["pending_epochs"]]
        pending = f"; still to try: {', '.join(todo)}" if todo else ""
        print(f"chosen: d = {record['chosen']}, {record['chosen_epochs']} epochs (the table's teacher: "
              f"d = {record['table_teacher_dim']}, {record['table_teacher_epochs']} epochs){pending}")
        return 0
    if args.command == "tradeoff":
        from .experiments.tradeoff import tradeoff_stage

        out = tradeoff_stage(args.profile, tuple(args.dataset) if args.dataset else None)
        for dataset, tables in {**({"ml-1m": out} if "summary" in out else {}), **out["datasets"]}.items():
            print(tables["summary"]["headline"])
        return 0
    if args.command == "train":
        from .hashing import UNTRAINED
        from .settings import train_config
        from .training.runs import run

        overrides = _overrides(args.set)
        if args.data_format is not None:
            overrides["data_format"] = args.data_format
        if args.hash_method in UNTRAINED:  # no training: codes of the --init LightGCN run's embeddings
            from .experiments import lightgcn_run

            init = args.init or str(lightgcn_run(args.profile, args.dataset, progress=False)[1])
            overrides = {"epochs": 0, **overrides, "hash_params": {**overrides.get("hash_params", {}), "init": str(init)}}
        elif args.hash_method:  # the study's hash settings (notebook 03), then --set on top
            from .experiments import hash_overrides, train_default_init

            hp = overrides.pop("hash_params", {})
            overrides = {**hash_overrides(args.profile, args.hash_method, model=args.model, dataset=args.dataset,
                                          init=args.init, **hp), **overrides}
            train_default_init(args.profile, args.dataset, overrides)  # the profile's LightGCN run, when it starts from it
        elif args.init:
            raise ValueError("--init applies to hash runs (--hash ...)")
        config = train_config(args.profile, str(args.dataset), model=args.model, hash_method=args.hash_method,
                              bits=args.bits, seed=args.seed, device=args.device, **overrides)
        metrics = run(config, args.out, retrain=args.retrain)
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    if args.command == "distill":
        from .distill import distill, read_embeddings, read_interactions
        from .distill.inputs import check_out
        from .distill.report import format_report

        overrides = _overrides(args.set)
        user, item = read_embeddings(args.embeddings, int(overrides.get("k", 20)))
        check_out(args.out)
        seen = None if args.interactions is None else read_interactions(args.interactions, len(user), len(item))
        test = None if args.test is None else read_interactions(args.test, len(user), len(item), "--test")
        searcher = distill(user, item, args.bits, interactions=seen, test=test, out=args.out,
                           keep_float=args.keep_float, profile=args.profile, seed=args.seed, **overrides)
        print(format_report(searcher.report))
        print(f"searcher: {args.out} (hashrec_utils.distill.load(DIR).search(user_emb, k)); report: {args.out}/report.json")
        return 0
    if args.command == "study":
        from .study import StudySettings, study

        out = study(StudySettings(args.dataset, profile=args.profile, format=args.format, bits=args.bits,
                                  seed=args.seed, overrides=_overrides(args.set)))
        print(json.dumps(out["files"], indent=2))
        return 0
    return 2  # pragma: no cover - argparse enforces a command


def _entry() -> int:
    """Bad input gets one line naming the problem, not a traceback."""
    try:
        return main()
    except (ValueError, ConnectionError, FileNotFoundError) as exc:
        print(f"hashrec: error: {exc}", file=sys.stderr)
        return 2
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before the interpreter exits: a gloo group left to
    interpreter shutdown can abort a rank ("terminate called without an active exception")."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(_entry())
