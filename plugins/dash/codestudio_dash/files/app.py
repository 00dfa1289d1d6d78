"""Example Dash app, created by the codestudio dash block.

Edit this file in the studio (or in the project's versioned files and sync):
the app restarts when it changes.
"""

from dash import Dash, Input, Output, dcc, html

app = Dash(__name__, title="Code Studio app")
app.layout = html.Div([
    html.H1("Hello from your Code Studio"),
    dcc.Input(id="name", value="Code Studio"),
    html.P(id="greeting"),
])

@app.callback(Output("greeting", "children"), Input("name", "value"))
def greet(name):
    return f"Hello, {name}!"

if __name__ == "__main__":
    app.run()
