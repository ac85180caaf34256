"""`--step-rights author` inside the agent: the start-up check that authorship can be
read, and each step run as its ruling says (pyagent.steps.rights): as the agent (the
caller carries on as usual), logged in as its author, or refused with a step result, a
WARNING line and a counter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyagent.logsetup import get_logger
from pyagent.schema.privileges import display_role
from pyagent.steps import rights
from pyagent.steps.result import StepOutcome, clean_text
from pyagent.steps.sql import run_sql_step
from pyagent.store.records import AuthorshipFacts, StepDef

if TYPE_CHECKING:
    from pyagent.agent.jobrun import JobContext

NOT_INSTALLED = (
    "--step-rights author needs pyagent's authorship records, which this database does not "
    "have: run `pyagent schema add-extras DSN` as the owner of the pgagent tables; "
    "no job runs until then"
)
NOT_READABLE = (
    "--step-rights author: the agent's role cannot read pyagent.authorship; as the owner of "
    "schema pyagent, run `GRANT USAGE ON SCHEMA pyagent TO <role>; GRANT SELECT ON "
    "pyagent.authorship TO <role>; GRANT EXECUTE ON FUNCTION pyagent.step_fingerprint(int4, "
    "text, text, text, text, bool), pyagent.job_fingerprint(bool, text) TO <role>` "
    "(add-extras grants them to PUBLIC); no job runs until then"
)


def authorship_problem(facts: AuthorshipFacts) -> str | None:
    """Why the agent cannot run jobs under --step-rights author, or None."""
    if not facts.installed:
        return NOT_INSTALLED
    if not facts.readable:
        return NOT_READABLE
    return None


def authorship_warnings(facts: AuthorshipFacts) -> list[str]:
    """What the operator should know but that does not stop the agent."""
    found: list[str] = []
    for role in facts.unknown_roles:
        found.append(
            f"--trusted-role {display_role(role)}: no such role; nobody is trusted through it"
        )
    if facts.triggers_always < 2:
        found.append(
            "pyagent's authorship triggers on pga_job/pga_jobstep are missing or not enabled "
            "ALWAYS: changes are not being recorded, and steps changed since run for nobody "
            "(run `pyagent schema add-extras` again to restore them)"
        )
    return found


async def run_with_author_rights(
    ctx: JobContext, job_id: int, step: StepDef, tag: str = ""
) -> StepOutcome | None:
    """Run or refuse `step` by its ruling; None when it runs as the agent (the caller then
    runs it as usual). `tag` names the step's session (as for any SQL step). Never raises
    except on cancellation."""
    ruling = rights.rule(step, job_id)
    if isinstance(ruling, rights.AsAgent):
        return None
    if isinstance(ruling, rights.Refused):
        return _refuse(ctx, job_id, step, ruling)
    settings = ctx.settings
    target = rights.author_conninfo(
        settings.conninfo, settings.application_name, step.dbname, ruling.role
    )
    get_logger().debug(
        f"Executing SQL step {step.step_id}(part of job {job_id}) logged in as its author "
        f"{display_role(ruling.role)}",
        job_id=job_id,
        step_id=step.step_id,
    )

    logged_in = True

    def cannot_log_in(reason: str) -> StepOutcome:
        nonlocal logged_in
        logged_in = False
        message = rights.login_failed_message(ruling.role, reason)
        return _refuse(
            ctx, job_id, step, rights.Refused(rights.Refusal.LOGIN, message, ruling.role)
        )

    outcome = await run_sql_step(
        ctx.pools.for_target(target),
        step.code,
        settings.max_output_bytes,
        tag,
        no_connection=cannot_log_in,
    )
    if ctx.metrics is not None and logged_in:
        ctx.metrics.step_ran_as_author()
    return outcome


def _refuse(ctx: JobContext, job_id: int, step: StepDef, refused: rights.Refused) -> StepOutcome:
    get_logger().warning(
        f"Step {step.step_id} of job {job_id}: {refused.message}",
        job_id=job_id,
        step_id=step.step_id,
        reason=refused.reason.value,
        author=refused.author,
    )
    if ctx.metrics is not None:
        ctx.metrics.step_refused(refused.reason.value)
    return StepOutcome(False, -1, clean_text(refused.message, ctx.settings.max_output_bytes))
