"""Fake of modules.progress: the task bookkeeping /internal/progress reads (A1111 v1.10.1 names)."""

import time

current_task = None
pending_tasks = {}
finished_tasks = []


def add_task_to_queue(id_job):
    pending_tasks[id_job] = time.time()


def start_task(id_task):
    global current_task
    current_task = id_task
    pending_tasks.pop(id_task, None)


def finish_task(id_task):
    global current_task
    if current_task == id_task:
        current_task = None
    finished_tasks.append(id_task)
