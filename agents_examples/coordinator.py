from sandbox.agents import agent, simulate


@agent(
    name="coordinator",
    role="Coordinator",
    goal="Run research -> analysis -> writing -> validation over the bus",
    tools=["delegate"],
)
async def coordinate(inputs, ctx):
    await simulate(inputs)
    query = str(inputs.get("query", "")).strip() or "nothing"
    research = await ctx.ask("researcher", {"query": query})
    analysis = await ctx.ask("analyzer", {"facts": research["facts"]})
    report = await ctx.ask("writer", {"topic": query, **analysis})
    verdict = await ctx.ask("validator", {"report": report["report"]})
    return {"query": query, "report": report["report"], "valid": verdict["valid"], "steps": ctx.steps}
