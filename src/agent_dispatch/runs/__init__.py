"""The vocabulary of one run, shared by the runtimes (which build and read it) and the runner
(which supervises it); it imports neither.

    spec      RunSpec (what to run) and the guards every value placed in an argv goes through
    events    StreamEvent: what a run reports while it goes
    outcome   RunOutcome (how the process ended, what it printed), timeout_failure()
    text      clean_text(), parse_json_answer(): text given back, made safe; a JSON answer read out
"""
