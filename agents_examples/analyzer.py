from sandbox.agents import agent, simulate


@agent(name="analyzer", role="Analyst", goal="Find what matters in a set of facts")
async def analyze(inputs, ctx):
    await simulate(inputs)
    facts = [str(f) for f in inputs.get("facts", [])] or [str(inputs.get("query", ""))]
    longest = max(facts, key=len)
    return {"count": len(facts), "key_point": longest, "confidence": round(min(1.0, 0.5 + 0.1 * len(facts)), 2)}
