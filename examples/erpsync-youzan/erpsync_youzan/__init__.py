"""Youzan (有赞云) connector for erpsync: client, mapping, connector and sandbox.

The worked example of an out-of-tree connector; README.md says which facts come from which
public document and which are assumptions (all of those live in `client.YOUZAN` and
`mapping.EXPRESS_IDS`, overridable per shop)."""
