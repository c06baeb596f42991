"""The fault-and-abuse case table with its counts (issue 5). `python tests/cases.py` prints it.

Faults are real runs of configs/tiny.yaml in tests/test_faults.py; bad inputs are the CASES tables of
tests/test_hostile.py and tests/test_hostile_surfaces.py. tests/test_faults.py::test_case_counts keeps this list tied to the tests that exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hostile_runs import BREAKERS, ODD_NAMES  # noqa: E402

# (fault, the test that survives it, what "survived" means there)
FAULTS = [
    *[(f"SIGKILL {where}", "test_kill_chain_resumes_to_the_uninterrupted_result",
       "resume continues; same prefix accuracies as the uninterrupted run; no saved file or epoch record lost")
      for where in (
          "during the teacher, while status.json is written",
          "after the teacher's epoch, while teacher.pt is written",
          "in student 1's epoch, while checkpoint.pt is written",
          "in student 1's epoch, while its metrics line is appended",
          "after student 1's last epoch, while student_01.pt is written",
          "after student 1 is saved, while prefix.csv is written",
          "in the middle of student 2's second epoch (external kill)",
      )],
    ("two runs started together in one folder", "test_two_runs_at_once_get_their_own_dirs",
     "distinct folders, own pids, same config; both listed"),
    ("40 runs created in one frozen second, forced name collisions", "test_same_second_creations_never_collide",
     "40 distinct folders"),
    ("readers racing a writer of status/summary/prefix/metrics", "test_atomic_files_never_read_half_written",
     "no half file ever read; all 300 metrics records kept"),
    ("two sessions watching a live run", "test_watchers_saw_only_whole_files", "no error, no shrinking metrics"),
    ("app process gone while its run trains; a killed run", "test_restarted_app_reattaches_and_sees_the_dead_run",
     "a fresh process sees running / died"),
    ("zero-byte, truncated, garbage checkpoint.pt", "test_corrupt_checkpoint_reads_as_none",
     "ignored with a warning"),
    ("truncated checkpoint.pt at resume", "test_truncated_checkpoint_resume_falls_back_to_last_student",
     "retrains from the last saved student to the same result"),
    ("corrupt saved student at resume", "test_corrupt_saved_student_is_a_clear_error",
     "one-line error naming the file; state failed"),
    (f"{len(BREAKERS)} kinds of damaged or hostile status/manifest/metrics/prefix/summary/student files, "
     f"{len(ODD_NAMES)} odd run names (tests/hostile_runs.py)", "test_listing_survives_every_corrupt_file",
     "`pkd runs` lists every run, each damaged one as broken with its one-line reason; exit 0"),
    (f"predict and eval on each of the {len(BREAKERS)} damaged runs",
     "test_predict_and_eval_on_every_corrupt_run_answer_in_one_line",
     "an answer, or one line naming the damaged file; no traceback; eval repairs a damaged prefix.csv"),
    ("read-only students/ while saving a student", "test_read_only_students_dir_stops_cleanly_and_loses_nothing",
     "one-line error; student 1 and checkpoint intact; resume saves without retraining"),
    ("read-only run folder at resume", "test_read_only_run_dir_refuses_to_start",
     "one-line error; no file changed"),
    ("--device cuda without a GPU (eval, resume)", "test_cuda_without_gpu_for_eval_and_resume", "one-line error"),
    ("PKD_SCAN_BACKEND=cuda on CPU / unknown backend", "test_forced_scan_backend_that_cannot_run_stops_before_anything",
     "one-line error before anything is created"),
    ("mamba-ssm absent or broken", "test_missing_or_broken_mamba_ssm_falls_back_and_says_so",
     "auto falls back to the torch scan with a warning; forced cuda explains how to fix"),
    ("device auto on a CPU machine", "test_reference_ran_on_cpu_and_said_so", "trains on the CPU and logs it"),
]


# Faults and inputs of tests in other files: (what, "file::test", what "survived" means there).
MORE_FAULTS = [
    ("two `train --resume` of one run at the same instant", "tests/runs/test_one_writer.py::"
     "test_two_resumes_at_the_same_instant_train_the_run_once", "one trains, the other stops; no duplicate record"),
    ("resume while another process holds the run's writer lock", "tests/runs/test_one_writer.py::"
     "test_a_run_held_by_another_process_is_not_resumed", "one-line error; not a byte written; lock gone with it"),
    ("SIGKILL between a run's creation and its start", "tests/runs/test_one_writer.py::"
     "test_a_run_killed_between_creation_and_start_reads_as_died_and_resumes", "reads as died; resume finishes it"),
    ("resume of a finished run", "tests/runs/test_one_writer.py::"
     "test_resuming_a_finished_run_is_refused_and_leaves_it_done",
     "refused in one line; the run stays done, no file changed"),
    ("config.yaml edited after creation", "tests/runs/test_one_writer.py::"
     "test_an_edited_config_yaml_is_not_silently_ignored",
     "resume refuses in one line"),
    ("manifest.json edited under saved students", "tests/runs/test_one_writer.py::"
     "test_a_manifest_edited_under_saved_students_is_a_clear_error", "resume and eval: one line naming the file"),
    ("SIGKILL of rank 1 of a 2-process torchrun run", "tests/train/test_distributed.py::"
     "test_a_killed_rank_stops_the_run_and_resume_finishes_it", "the run stops; resume ends with the same figures"),
    ("SIGKILL of a sweep's worker mid-trial (shared teacher)", "tests/test_faults_surfaces.py::"
     "test_a_sweep_worker_killed_mid_trial_is_adopted_and_resumed",
     "the same command adopts the trial (its stored overrides checked) and resumes it: one trial, complete"),
    ("SIGKILL of a sweep mid-trial (base-run teacher), continued by 2 workers", "tests/sweep/test_sweep_worker.py::"
     "test_killed_sweep_continues_to_three_trials_without_a_duplicate", "trial adopted and resumed; no duplicate"),
    ("SIGKILL of `pkd export` mid-write of its file, then of its model card", "tests/test_faults_surfaces.py::"
     "test_export_killed_mid_write_is_resumed_or_refused_cleanly",
     "the dead export's temp file removed; a whole file without its card refused in one line; --force finishes"),
]
MORE_INPUTS = [
    ("path", "--run-dir through a missing folder onto an existing one", "tests/runs/test_one_writer.py::"
     "test_run_dir_through_a_missing_folder_onto_an_existing_one_is_refused", 1),
    ("path", "run directory with metrics.jsonl / train.log / students/ / a student file linking out of it",
     "tests/runs/test_one_writer.py::test_resume_refuses_a_run_directory_with_links_out_of_it", 4),
    ("config", "YAML alias bomb under 1 KB", "tests/runs/test_one_writer.py::"
     "test_yaml_alias_bombs_are_refused_at_once", 1),
    ("config", ".nan / .inf / -.inf in five kinds of field", "tests/runs/test_one_writer.py::"
     "test_non_finite_numbers_are_refused_before_anything_is_created", 5),
    ("name", "run names outside the rule (leading '-', non-ASCII, 129 chars, '/', '..', tab, empty)",
     "tests/runs/test_one_writer.py::test_run_names_outside_the_rule_are_refused_with_the_rule", 8),
    ("cli", "--nproc 0; a world larger than the data", "tests/train/test_distributed.py::test_hostile_process_counts",
     2),
    ("path", "a rank given another run directory than rank 0", "tests/train/test_distributed.py::"
     "test_a_rank_given_another_run_dir_is_refused", 1),
]


def hostile_cases() -> list:
    from test_hostile import CASES
    from test_hostile_surfaces import CASES as SURFACES  # sweep folder, export, pareto, Resume, clips, specs

    return CASES + SURFACES


def counts() -> dict[str, int]:
    cases = hostile_cases()
    by_kind: dict[str, int] = {}
    for case in cases:
        by_kind[case.kind] = by_kind.get(case.kind, 0) + 1
    for kind, _, _, n in MORE_INPUTS:
        by_kind[kind] = by_kind.get(kind, 0) + n
    faults = FAULTS + MORE_FAULTS
    return {"faults": len(faults), "hard_kills": sum(f[0].startswith("SIGKILL") for f in faults),
            "bad_inputs": len(cases) + sum(n for *_, n in MORE_INPUTS),
            **{f"bad_inputs_{k}": v for k, v in sorted(by_kind.items())}, "data_lost": 0}


if __name__ == "__main__":
    for fault, test, survived in FAULTS:
        print(f"fault  | {fault} | {survived} | tests/test_faults.py::{test}")
    for fault, test, survived in MORE_FAULTS:
        print(f"fault  | {fault} | {survived} | {test}")
    for case in hostile_cases():
        print(f"input  | {case.kind} | {case.name} | exit {case.rc}, says /{case.expect}/")
    for kind, name, test, n in MORE_INPUTS:
        print(f"input  | {kind} | {name} ({n} cases) | {test}")
    print(counts())
