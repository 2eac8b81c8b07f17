from supervisor.cli import command

command()
