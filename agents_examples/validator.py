from sandbox.agents import agent, simulate


@agent(name="validator", role="Validator", goal="Check that a report is complete")
async def validate(inputs, ctx):
    await simulate(inputs)
    report = str(inputs.get("report", ""))
    problems = []
    if not report.startswith("Report on"):
        problems.append("missing title")
    if "Key point:" not in report:
        problems.append("missing key point")
    return {"valid": not problems, "problems": problems, "length": len(report)}
