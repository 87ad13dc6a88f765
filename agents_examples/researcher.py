from sandbox.agents import agent, simulate


@agent(name="researcher", role="Researcher", goal="Collect facts about a query", tools=["search"])
async def research(inputs, ctx):
    await simulate(inputs)
    query = str(inputs.get("query", "")).strip() or "nothing"
    words = query.split()
    facts = [f"'{query}' has {len(words)} word(s)", f"'{query}' has {len(query)} character(s)"]
    facts += [f"source {i + 1} mentions '{word}'" for i, word in enumerate(words[:3])]
    return {"query": query, "facts": facts}
