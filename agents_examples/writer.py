from sandbox.agents import agent, simulate


@agent(name="writer", role="Writer", goal="Turn an analysis into a short report")
async def write(inputs, ctx):
    await simulate(inputs)
    topic = str(inputs.get("topic") or inputs.get("query") or "the topic")
    key_point = str(inputs.get("key_point") or "no key point given")
    count = inputs.get("count", 0)
    report = f"Report on {topic}: {count} fact(s) reviewed. Key point: {key_point}."
    return {"report": report, "words": len(report.split())}
