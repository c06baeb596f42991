"""The fault-and-abuse case table with its counts (issue 5). `python tests/cases.py` prints it.

Faults are real runs of configs/tiny.yaml in tests/test_faults.py; bad inputs are the CASES table of
tests/test_hostile.py. tests/test_faults.py::test_case_counts keeps this list tied to the tests that exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    ("13 kinds of corrupt status/manifest/metrics/prefix/summary files", "test_listing_survives_every_corrupt_file",
     "`pkd runs` lists every run"),
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


def hostile_cases() -> list:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_hostile import CASES

    return CASES


def counts() -> dict[str, int]:
    cases = hostile_cases()
    by_kind: dict[str, int] = {}
    for case in cases:
        by_kind[case.kind] = by_kind.get(case.kind, 0) + 1
    return {"faults": len(FAULTS), "hard_kills": sum(f[0].startswith("SIGKILL") for f in FAULTS),
            "bad_inputs": len(cases), **{f"bad_inputs_{k}": v for k, v in sorted(by_kind.items())},
            "data_lost": 0}


if __name__ == "__main__":
    for fault, test, survived in FAULTS:
        print(f"fault  | {fault} | {survived} | tests/test_faults.py::{test}")
    for case in hostile_cases():
        print(f"input  | {case.kind} | {case.name} | exit {case.rc}, says /{case.expect}/")
    print(counts())
