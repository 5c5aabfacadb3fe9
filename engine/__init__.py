"""A generic BPM runtime on SpiffWorkflow: definitions, instances, work items, audit log, clock.

``engine`` knows nothing of calls or districts; it could run any BPMN with
people in it.  It is the only package that imports SpiffWorkflow.
"""
