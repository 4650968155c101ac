"""Fake of modules.shared_state (A1111 and Forge): the parts of State that jobs touch: begin/end reset
the flags, interrupt sets one."""


class State:
    def __init__(self):
        self.interrupted = False
        self.skipped = False
        self.stopping_generation = False
        self.job = ""
        self.job_count = -1
        self.job_no = 0
        self.sampling_step = 0
        self.jobs_begun = []

    def begin(self, job="(unknown)"):
        self.interrupted = False
        self.skipped = False
        self.job = job
        self.job_count = -1
        self.job_no = 0
        self.sampling_step = 0
        self.jobs_begun.append(job)

    def end(self):
        self.job = ""
        self.job_count = 0

    def interrupt(self):
        self.interrupted = True
